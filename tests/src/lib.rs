//! Shared helpers for Vigil integration tests.
