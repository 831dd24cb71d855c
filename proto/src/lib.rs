//! Protocol buffers of CLT: the IOAM trace API and P4Runtime, with generated code
