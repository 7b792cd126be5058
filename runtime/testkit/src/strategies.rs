//! Proptest strategies shared by the host tests.
