//! Crash matrix (filled in below).
