//! The IOAM agent and the CLT collector that joins IOAM traces with OTLP spans
