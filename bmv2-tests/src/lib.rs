//! End-to-end tests against simple_switch_grpc
