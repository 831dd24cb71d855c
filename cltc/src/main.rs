fn main() -> anyhow::Result<()> {
    anyhow::bail!("cltc: not yet implemented")
}
