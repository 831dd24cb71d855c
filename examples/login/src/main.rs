fn main() -> anyhow::Result<()> {
    clt_login_demo::main()
}
