from collector.compiled import warn_if_stale

warn_if_stale(__name__)
