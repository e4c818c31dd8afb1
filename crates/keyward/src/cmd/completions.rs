//! `keyward completions <shell>` and `keyward man`: generated from the clap definitions, so they
//! never drift from the commands.

use std::io::Write;

/// Print a shell completion script.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The shell to complete for.
    #[arg(value_enum)]
    shell: clap_complete::Shell,
}

pub fn completions(mut command: clap::Command, args: &Args) {
    clap_complete::generate(args.shell, &mut command, "keyward", &mut std::io::stdout());
}

pub fn man(command: clap::Command) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    clap_mangen::Man::new(command).render(&mut out)?;
    out.flush()?;
    Ok(())
}
