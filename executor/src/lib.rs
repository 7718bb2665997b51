//! Vigil executor.
