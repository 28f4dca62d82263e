//! AuthorizationPolicy evaluation (being written).
