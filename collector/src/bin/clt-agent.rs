fn main() -> anyhow::Result<()> {
    clt_collector::cli::agent_main()
}
