//! `keyward config example`.

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Print a commented example config file with every default.
    Example,
}

pub fn run(command: &Command) {
    match command {
        Command::Example => print!("{}", keyward_server::config::EXAMPLE),
    }
}
