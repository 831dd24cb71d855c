fn main() -> anyhow::Result<()> {
    clt_collector::cli::collector_main()
}
