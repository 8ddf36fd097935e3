//! The command line before argh reads it: global options (`--config FILE`) are accepted after
//! the subcommand too (`caracal config show --config FILE`), as users type them, by moving them
//! in front of it. Pure: no I/O, no parsing of the subcommands themselves.

/// Options that belong to `caracal` itself, with the number of values each takes.
const GLOBAL_OPTIONS: [(&str, usize); 1] = [("--config", 1)];

/// `args` without the program name, with every global option (and its value) that appears after
/// the subcommand moved to the front, in order. `--config=FILE` becomes `--config FILE`.
/// Nothing after a `--` is touched, and an option missing its value is left for argh to refuse.
pub fn hoist_global_options(args: &[String]) -> Vec<String> {
    let mut globals = Vec::new();
    let mut rest = Vec::with_capacity(args.len());
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        if arg == "--" {
            rest.extend_from_slice(&args[i..]);
            break;
        }
        if let Some((name, value)) = arg.split_once('=') {
            if GLOBAL_OPTIONS.iter().any(|(g, n)| *g == name && *n == 1) {
                globals.push(name.to_owned());
                globals.push(value.to_owned());
                i += 1;
                continue;
            }
        }
        match GLOBAL_OPTIONS.iter().find(|(g, _)| g == arg) {
            Some((_, values)) if i + values < args.len() => {
                globals.extend_from_slice(&args[i..=i + values]);
                i += values + 1;
            }
            _ => {
                rest.push(arg.clone());
                i += 1;
            }
        }
    }
    globals.extend(rest);
    globals
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hoist(args: &[&str]) -> Vec<String> {
        let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        hoist_global_options(&args)
    }

    #[test]
    fn a_config_option_after_the_subcommand_moves_in_front_of_it() {
        assert_eq!(
            hoist(&["config", "show", "--config", "c.yaml"]),
            ["--config", "c.yaml", "config", "show"]
        );
        assert_eq!(
            hoist(&["agent", "list", "--config=c.yaml", "--output", "json"]),
            ["--config", "c.yaml", "agent", "list", "--output", "json"]
        );
        assert_eq!(
            hoist(&["--config", "c.yaml", "serve"]),
            ["--config", "c.yaml", "serve"]
        );
    }

    #[test]
    fn arguments_after_a_double_dash_and_a_trailing_option_are_left_alone() {
        assert_eq!(
            hoist(&["agent", "get", "--", "--config", "x"]),
            ["agent", "get", "--", "--config", "x"]
        );
        assert_eq!(hoist(&["serve", "--config"]), ["serve", "--config"]);
    }
}
