//! Applies cltc Linux plans over netlink, and the CLT socket API
