//! Google Cloud Tasks over its REST API (being written).
