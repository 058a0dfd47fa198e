"""Schema and versioned migrations. Each migration runs once, in order, in its own transaction.

SQL stays portable to DuckDB 1.4.4 and newer.
"""

from __future__ import annotations

import duckdb

MIGRATIONS: list[tuple[int, str, str]] = [
    (
        1,
        "raw records: spans, logs, events, rejections",
        """
        CREATE TABLE spans (
            trace_id VARCHAR NOT NULL,
            span_id VARCHAR NOT NULL,
            parent_span_id VARCHAR,
            name VARCHAR,
            kind TINYINT,
            start_ns BIGINT,
            end_ns BIGINT,
            status_code TINYINT,
            status_message VARCHAR,
            attributes JSON,
            resource_attributes JSON,
            service_name VARCHAR,
            scope_name VARCHAR,
            scope_version VARCHAR,
            scope_attributes JSON,
            events JSON,
            links JSON,
            trace_state VARCHAR,
            flags UINTEGER,
            dropped_attributes_count UINTEGER,
            dropped_events_count UINTEGER,
            dropped_links_count UINTEGER,
            resource_schema_url VARCHAR,
            scope_schema_url VARCHAR,
            messaging_system VARCHAR,
            messaging_destination VARCHAR,
            messaging_operation VARCHAR,
            messaging_conversation_id VARCHAR,
            messaging_message_id VARCHAR,
            server_address VARCHAR,
            ingested_ns BIGINT,
            PRIMARY KEY (trace_id, span_id)
        );
        CREATE TABLE logs (
            record_id VARCHAR PRIMARY KEY,
            time_ns BIGINT,
            observed_time_ns BIGINT,
            severity_number TINYINT,
            severity_text VARCHAR,
            body JSON,
            attributes JSON,
            resource_attributes JSON,
            service_name VARCHAR,
            scope_name VARCHAR,
            scope_version VARCHAR,
            trace_id VARCHAR,
            span_id VARCHAR,
            flags UINTEGER,
            event_name VARCHAR,
            dropped_attributes_count UINTEGER,
            ingested_ns BIGINT
        );
        CREATE TABLE events (
            event_key VARCHAR PRIMARY KEY,
            id VARCHAR,
            source VARCHAR,
            type VARCHAR,
            transport VARCHAR,
            specversion VARCHAR,
            time_ns BIGINT,
            received_ns BIGINT,
            subject VARCHAR,
            datacontenttype VARCHAR,
            dataschema VARCHAR,
            data JSON,
            extensions JSON,
            headers JSON,
            destination VARCHAR,
            destination_details JSON,
            message_id VARCHAR,
            trace_id VARCHAR,
            parent_span_id VARCHAR,
            ingested_ns BIGINT
        );
        CREATE TABLE rejections (
            received_ns BIGINT,
            source VARCHAR,
            reason VARCHAR,
            sample VARCHAR
        );
        """,
    ),
    (
        2,
        "materialized analysis: sagas, steps, findings, membership",
        """
        CREATE TABLE sagas (
            saga_key VARCHAR PRIMARY KEY,
            saga_type VARCHAR,
            status VARCHAR,
            started_ns BIGINT,
            ended_ns BIGINT,
            last_progress_ns BIGINT,
            explanation VARCHAR,
            services VARCHAR[],
            trace_ids VARCHAR[],
            business_keys VARCHAR[],
            step_count INTEGER,
            finding_count INTEGER,
            record_count INTEGER,
            failed_step VARCHAR,
            waiting_for VARCHAR,
            identity_rule VARCHAR,
            updated_ns BIGINT
        );
        CREATE TABLE steps (
            saga_key VARCHAR,
            seq INTEGER,
            name VARCHAR,
            step_type VARCHAR,
            service VARCHAR,
            start_ns BIGINT,
            end_ns BIGINT,
            outcome VARCHAR,
            attempts INTEGER,
            compensates VARCHAR,
            compensation_inferred BOOLEAN,
            error VARCHAR,
            actor VARCHAR,
            records VARCHAR[]
        );
        CREATE TABLE findings (
            finding_id VARCHAR PRIMARY KEY,
            saga_key VARCHAR,
            kind VARCHAR,
            severity VARCHAR,
            step VARCHAR,
            explanation VARCHAR,
            evidence VARCHAR[],
            detected_ns BIGINT,
            details JSON,
            acknowledged_ns BIGINT,
            acknowledged_by VARCHAR
        );
        CREATE TABLE saga_traces (
            trace_id VARCHAR PRIMARY KEY,
            saga_key VARCHAR
        );
        CREATE TABLE saga_events (
            event_key VARCHAR PRIMARY KEY,
            saga_key VARCHAR
        );
        CREATE TABLE saga_identity (
            identity_key VARCHAR PRIMARY KEY,
            saga_key VARCHAR
        );
        CREATE TABLE trace_links (
            from_trace VARCHAR,
            to_trace VARCHAR,
            PRIMARY KEY (from_trace, to_trace)
        );
        CREATE INDEX steps_saga ON steps (saga_key);
        CREATE INDEX findings_saga ON findings (saga_key);
        """,
    ),
    (
        3,
        "append-only, hash-chained audit log of sagalens' own actions",
        """
        CREATE TABLE audit_log (
            seq BIGINT PRIMARY KEY,
            at_ns BIGINT,
            actor VARCHAR,
            action VARCHAR,
            details JSON,
            prev_hash VARCHAR,
            hash VARCHAR
        );
        """,
    ),
    (
        4,
        "steps carry their saga type and the step that followed, so flow queries read one table",
        """
        DROP INDEX steps_saga;
        ALTER TABLE steps ADD COLUMN saga_type VARCHAR;
        ALTER TABLE steps ADD COLUMN next_step VARCHAR;
        UPDATE steps SET saga_type = g.saga_type FROM sagas g WHERE steps.saga_key = g.saga_key;
        UPDATE steps SET next_step = n.next_step
        FROM (
            SELECT saga_key, seq, lead(name) OVER (PARTITION BY saga_key ORDER BY seq) AS next_step
            FROM steps
        ) n
        WHERE steps.saga_key = n.saga_key AND steps.seq = n.seq;
        CREATE INDEX steps_saga ON steps (saga_key);
        """,
    ),
    (
        5,
        # Records stored before this version were analysed as they arrived: none is pending.
        "analysis progress kept in the store: the backlog survives a restart",
        """
        CREATE TABLE analysis_progress (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            ingested_ns BIGINT NOT NULL,
            record VARCHAR NOT NULL
        );
        INSERT INTO analysis_progress SELECT 1, 1 + greatest(
            coalesce((SELECT max(ingested_ns) FROM spans), 0),
            coalesce((SELECT max(ingested_ns) FROM logs), 0),
            coalesce((SELECT max(ingested_ns) FROM events), 0)
        ), '';
        """,
    ),
    (
        6,
        # The analysis alone writes these tables, replacing a saga's rows whole, so their
        # keys are unique without a constraint. The collector reads them by lists of keys,
        # which DuckDB joins by hashing whatever index there is; a read of one saga finds
        # its rows by the zone maps of row groups a rebuild stores in key order. The
        # indexes cost each analysis pass a lookup per row inserted, and a full rebuild
        # half its store time. trace_links keeps its key, which its inserts rely on.
        "analysis tables without primary keys and indexes",
        "DROP INDEX steps_saga;\nDROP INDEX findings_saga;\n"
        + "".join(
            f"CREATE TABLE {t}_v6 AS SELECT * FROM {t};\n"
            f"DROP TABLE {t};\n"
            f"ALTER TABLE {t}_v6 RENAME TO {t};\n"
            for t in ("sagas", "findings", "saga_traces", "saga_events", "saga_identity")
        ),
    ),
    (
        7,
        # What the stored sagas were analysed with (see collector.runner.analysis_basis): a
        # collector whose analysis or saga definitions differ analyses the store again.
        # Stores from before this version say nothing, so they are analysed again once.
        "analysis basis kept in the store: changed definitions re-analyse what is stored",
        "ALTER TABLE analysis_progress ADD COLUMN analysed_with VARCHAR NOT NULL DEFAULT '';\n"
        "ALTER TABLE analysis_progress ADD COLUMN reanalysis VARCHAR NOT NULL DEFAULT '';\n"
        "ALTER TABLE analysis_progress ADD COLUMN reanalysis_until_ns BIGINT NOT NULL DEFAULT 0;\n",
    ),
]

LATEST_VERSION = MIGRATIONS[-1][0]


def stored_version(conn: duckdb.DuckDBPyConnection) -> int:
    """The schema version a store was migrated to (0 for a file sagalens never wrote)."""
    try:
        row = conn.execute("SELECT coalesce(max(version), 0) FROM schema_migrations").fetchone()
    except duckdb.CatalogException:
        return 0
    return int(row[0]) if row else 0


def writable_problem(conn: duckdb.DuckDBPyConnection, path: str) -> str:
    """Why the collector must not write to a store, or "" when it may migrate and write it."""
    version = stored_version(conn)
    if version > LATEST_VERSION:
        return readable_problem(version, path)
    if version == 0:
        tables = [
            row[0]
            for row in conn.execute(
                "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database() "
                "ORDER BY table_name"
            ).fetchall()
        ]
        if tables:
            shown = ", ".join(tables[:5]) + (", ..." if len(tables) > 5 else "")
            return (
                f"{path} is a DuckDB file of something else (it holds {shown} and no "
                "schema_migrations); sagalens keeps its records in a file of its own: give --db "
                "a new path"
            )
    return ""


def readable_problem(version: int, path: str) -> str:
    """Why a store opened read-only cannot be browsed by this sagalens, or "" when it can."""
    if version == LATEST_VERSION:
        return ""
    if version == 0:
        return f"{path} is not a sagalens store (it has no schema_migrations table)"
    if version > LATEST_VERSION:
        return (
            f"{path} was written by a newer sagalens (schema {version}; this one knows up to "
            f"{LATEST_VERSION}); upgrade sagalens to read it"
        )
    return (
        f"{path} was written by an older sagalens (schema {version}, this one needs "
        f"{LATEST_VERSION}). Open it once read-write to upgrade it, for example with "
        f"`sagalens collector --db {path}` (stop it with Ctrl-C), or browse a copy upgraded so"
    )
