//! Istio YAML → layover policy compiler (being written).
