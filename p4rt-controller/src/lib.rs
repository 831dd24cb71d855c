//! P4Runtime controller: installs compiled programs and entries, forwards digests, rolls out policies
