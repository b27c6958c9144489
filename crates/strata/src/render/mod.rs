//! SQL for each dialect, rendered from operations read against the schema before them.
