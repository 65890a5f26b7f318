//! Integration tests against the real kernel and databases.
