//! Command-line parsing: each subcommand describes its positional arguments and
//! `--options` in a [`Spec`], which yields both its `--help` text and a [`Parsed`] view
//! of the arguments (read with `lexopt`, which has no dependencies: the peer shares its
//! workspace with the guests). Every error names the argument at fault (the caller prints it
//! and exits 2).
use std::fmt::Write as _;
use std::time::Duration;

/// One `--option` of a subcommand.
#[derive(Debug)]
pub struct Opt {
    /// The name without its leading `--`.
    pub name: &'static str,
    /// The placeholder of its value in help texts, or `None` for a flag.
    pub value: Option<&'static str>,
    /// The value used when the option is absent (also shown by `--help`).
    pub default: Option<&'static str>,
    /// Whether the option must be given.
    pub required: bool,
    /// One line of help.
    pub help: &'static str,
}

impl Opt {
    /// An option taking a value, with a default.
    pub const fn val(
        name: &'static str,
        value: &'static str,
        default: &'static str,
        help: &'static str,
    ) -> Self {
        Self {
            name,
            value: Some(value),
            default: Some(default),
            required: false,
            help,
        }
    }

    /// An option taking a value that must be given.
    pub const fn req(name: &'static str, value: &'static str, help: &'static str) -> Self {
        Self {
            name,
            value: Some(value),
            default: None,
            required: true,
            help,
        }
    }

    /// A flag: present or not.
    pub const fn flag(name: &'static str, help: &'static str) -> Self {
        Self {
            name,
            value: None,
            default: None,
            required: false,
            help,
        }
    }
}

/// `--timeout SECS`, which every network subcommand takes.
pub const TIMEOUT: Opt = Opt::val(
    "timeout",
    "SECS",
    "120",
    "give up on the whole command after SECS seconds (fractions allowed)",
);

/// What a subcommand accepts.
#[derive(Debug)]
pub struct Spec {
    /// The subcommand's name, e.g. `udp-echo`.
    pub name: &'static str,
    /// Its positional arguments, in order, all required (e.g. `HOST:PORT`).
    pub args: &'static [&'static str],
    /// What it does (paragraphs of the `--help` text).
    pub about: &'static str,
    /// Its options.
    pub opts: &'static [Opt],
}

impl Spec {
    /// The one-line synopsis, e.g. `xenbox-peer udp-echo HOST:PORT [--count N] ...`.
    pub fn synopsis(&self) -> String {
        let mut s = format!("xenbox-peer {}", self.name);
        for a in self.args {
            write!(s, " {a}").unwrap();
        }
        for o in self.opts {
            let body = match o.value {
                Some(v) => format!("--{} {v}", o.name),
                None => format!("--{}", o.name),
            };
            if o.required {
                write!(s, " {body}").unwrap();
            } else {
                write!(s, " [{body}]").unwrap();
            }
        }
        s
    }

    /// The `--help` text.
    pub fn help(&self) -> String {
        let mut s = format!("usage: {}\n\n{}\n\noptions:\n", self.synopsis(), self.about);
        let left = |o: &Opt| match o.value {
            Some(v) => format!("--{} {v}", o.name),
            None => format!("--{}", o.name),
        };
        let width = self
            .opts
            .iter()
            .map(|o| left(o).len())
            .max()
            .unwrap_or(0)
            .max(10);
        for o in self.opts {
            write!(s, "  {:width$}  {}", left(o), o.help).unwrap();
            match (o.default, o.required) {
                (Some(d), _) => writeln!(s, " (default {d})").unwrap(),
                (None, true) => writeln!(s, " (required)").unwrap(),
                (None, false) => s.push('\n'),
            }
        }
        writeln!(s, "  {:width$}  this help", "-h, --help").unwrap();
        s
    }
}

/// Why the arguments were not run.
#[derive(Debug, PartialEq, Eq)]
pub enum Usage {
    /// `-h` or `--help` was given.
    Help,
    /// A wrong argument, described (naming it).
    Bad(String),
}

/// Shorthand for a [`Usage::Bad`] result.
pub fn bad<T>(msg: impl Into<String>) -> Result<T, Usage> {
    Err(Usage::Bad(msg.into()))
}

/// Arguments parsed against a [`Spec`].
#[derive(Debug)]
pub struct Parsed {
    spec: &'static Spec,
    /// The positional arguments, as many as [`Spec::args`].
    pub pos: Vec<String>,
    vals: Vec<(&'static str, String)>,
    flags: Vec<&'static str>,
}

/// Parse `args` (those after the subcommand's name) against `spec` with `lexopt`.
/// Accepts `--name VALUE`, `--name=VALUE` and `--` (only positionals follow); `-` is a
/// positional.
pub fn parse(spec: &'static Spec, args: &[String]) -> Result<Parsed, Usage> {
    use lexopt::Arg;
    let mut p = Parsed {
        spec,
        pos: Vec::new(),
        vals: Vec::new(),
        flags: Vec::new(),
    };
    let mut parser = lexopt::Parser::from_args(args);
    while let Some(arg) = parser.next().map_err(|e| lexopt_error(&e, spec))? {
        match arg {
            Arg::Value(v) => p.pos.push(v.to_string_lossy().into_owned()),
            Arg::Long("help") => return Err(Usage::Help),
            // Only `-h` itself is a short option: `-qx` and `-h2` are named whole.
            Arg::Short(c) => match (c, parser.optional_value()) {
                ('h', None) => return Err(Usage::Help),
                (c, rest) => {
                    let rest = rest.map(|r| r.to_string_lossy().into_owned());
                    return bad(format!("unknown option -{c}{}", rest.unwrap_or_default()));
                }
            },
            Arg::Long(name) => {
                let Some(o) = spec.opts.iter().find(|o| o.name == name) else {
                    return bad(format!("unknown option --{name}"));
                };
                p.take(o, &mut parser)?;
            }
        }
    }
    p.check()?;
    Ok(p)
}

/// What lexopt refuses, said as this parser says it: only a flag given a value
/// (`--verify=1`) gets here, or an argument that is not UTF-8.
fn lexopt_error(e: &lexopt::Error, spec: &Spec) -> Usage {
    match e {
        lexopt::Error::UnexpectedValue { option, .. } => {
            let known = spec.opts.iter().any(|o| format!("--{}", o.name) == *option);
            Usage::Bad(if known {
                format!("{option} takes no value")
            } else {
                format!("unknown option {option}")
            })
        }
        e => Usage::Bad(e.to_string()),
    }
}

impl Parsed {
    /// Take option `o` (just read by `parser`): its value, or the flag.
    fn take(&mut self, o: &'static Opt, parser: &mut lexopt::Parser) -> Result<(), Usage> {
        let name = o.name;
        let Some(meta) = o.value else {
            self.flags.push(name);
            return Ok(());
        };
        let v = match parser.value() {
            Ok(v) => v.to_string_lossy().into_owned(),
            Err(_) => return bad(format!("--{name} needs a value ({meta})")),
        };
        if self.vals.iter().any(|(n, _)| *n == name) {
            return bad(format!("--{name} given twice"));
        }
        self.vals.push((name, v));
        Ok(())
    }

    /// Every positional there, none more, and every required option given.
    fn check(&self) -> Result<(), Usage> {
        let spec = self.spec;
        if let Some(missing) = spec.args.get(self.pos.len()) {
            return bad(format!("missing {missing}"));
        }
        if let Some(extra) = self.pos.get(spec.args.len()) {
            return bad(format!("unexpected argument {extra:?}"));
        }
        if let Some(o) = spec
            .opts
            .iter()
            .find(|o| o.required && !self.vals.iter().any(|(n, _)| *n == o.name))
        {
            return bad(format!("missing --{} {}", o.name, o.value.unwrap_or("")));
        }
        Ok(())
    }
}

/// Parse a count: decimal or `0x` hex, optionally with a binary suffix `K`, `M` or `G`
/// (e.g. `32M` = 33554432).
pub fn number(s: &str) -> Option<u64> {
    let s = s.trim();
    let (digits, mult) = match s.as_bytes().last()? {
        b'k' | b'K' => (&s[..s.len() - 1], 1u64 << 10),
        b'm' | b'M' => (&s[..s.len() - 1], 1 << 20),
        b'g' | b'G' => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    let n = match digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        Some(hex) => u64::from_str_radix(hex, 16).ok()?,
        None => digits.parse::<u64>().ok()?,
    };
    n.checked_mul(mult)
}

impl Parsed {
    /// The raw value of `--name`, or its default.
    fn raw(&self, name: &str) -> Option<&str> {
        self.vals
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
            .or_else(|| {
                self.spec
                    .opts
                    .iter()
                    .find(|o| o.name == name)
                    .and_then(|o| o.default)
            })
    }

    fn value(&self, name: &str) -> Result<&str, Usage> {
        debug_assert!(self.spec.opts.iter().any(|o| o.name == name), "{name}");
        match self.raw(name) {
            Some(v) => Ok(v),
            None => bad(format!("missing --{name}")),
        }
    }

    /// The value of `--name` as given (or its default), if any.
    pub fn text(&self, name: &str) -> Option<&str> {
        debug_assert!(self.spec.opts.iter().any(|o| o.name == name), "{name}");
        self.raw(name)
    }

    /// Whether the flag `--name` was given.
    pub fn flag(&self, name: &str) -> bool {
        debug_assert!(self.spec.opts.iter().any(|o| o.name == name), "{name}");
        self.flags.contains(&name)
    }

    /// `--name` as a count (see [`number`]), within `min..=max`.
    pub fn u64_in(&self, name: &str, min: u64, max: u64) -> Result<u64, Usage> {
        let v = self.value(name)?;
        match number(v) {
            Some(n) if (min..=max).contains(&n) => Ok(n),
            Some(_) => bad(format!("--{name}: {v} is not within {min}..={max}")),
            None => bad(format!("--{name}: expected a number, got {v:?}")),
        }
    }

    /// `--name` as any count (see [`number`]).
    pub fn u64(&self, name: &str) -> Result<u64, Usage> {
        self.u64_in(name, 0, u64::MAX)
    }

    /// `--name` as a positive number of seconds (fractions allowed).
    pub fn secs(&self, name: &str) -> Result<Duration, Usage> {
        let v = self.value(name)?;
        match v.trim().parse::<f64>() {
            Ok(s) if s > 0.0 && s <= 1e9 => Ok(Duration::from_secs_f64(s)),
            _ => bad(format!(
                "--{name}: expected a positive number of seconds, got {v:?}"
            )),
        }
    }

    /// `--name` as a positive number of milliseconds.
    pub fn millis(&self, name: &str) -> Result<Duration, Usage> {
        Ok(Duration::from_millis(self.u64_in(name, 1, 1 << 40)?))
    }

    /// The overall `--timeout`.
    pub fn timeout(&self) -> Result<Duration, Usage> {
        self.secs("timeout")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static SPEC: Spec = Spec {
        name: "demo",
        args: &["HOST:PORT", "PATH"],
        about: "A demo.",
        opts: &[
            Opt::val("count", "N", "10", "how many"),
            Opt::req("size", "B", "how big"),
            Opt::flag("verify", "check"),
            TIMEOUT,
        ],
    };

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    fn err(s: &str) -> String {
        match parse(&SPEC, &args(s)) {
            Err(Usage::Bad(m)) => m,
            other => panic!("{s}: {other:?}"),
        }
    }

    #[test]
    fn parses_positionals_options_and_defaults() {
        let p = parse(&SPEC, &args("h:1 /x --size=4K --verify --timeout 0.5")).unwrap();
        assert_eq!(p.pos, ["h:1", "/x"]);
        assert_eq!(p.u64("count").unwrap(), 10);
        assert_eq!(p.u64("size").unwrap(), 4096);
        assert!(p.flag("verify"));
        assert_eq!(p.timeout().unwrap(), Duration::from_millis(500));
        let p = parse(&SPEC, &args("--count 0x10 h:1 --size 1 -- -odd")).unwrap();
        assert_eq!(p.pos, ["h:1", "-odd"]);
        assert_eq!(p.u64("count").unwrap(), 16);
        assert!(!p.flag("verify"));
    }

    #[test]
    fn errors_name_the_argument() {
        assert_eq!(err("h:1 /x"), "missing --size B");
        assert_eq!(err("h:1 --size 1"), "missing PATH");
        assert_eq!(err("h:1 /x y --size 1"), "unexpected argument \"y\"");
        assert_eq!(err("h:1 /x --size 1 --bogus"), "unknown option --bogus");
        assert_eq!(err("h:1 /x --size 1 -q"), "unknown option -q");
        assert_eq!(err("h:1 /x --size"), "--size needs a value (B)");
        assert_eq!(err("h:1 /x --size 1 --size 2"), "--size given twice");
        assert_eq!(err("h:1 /x --size 1 --verify=1"), "--verify takes no value");
        let p = parse(&SPEC, &args("h:1 /x --size lots --timeout -1")).unwrap();
        assert_eq!(
            p.u64("size"),
            Err(Usage::Bad("--size: expected a number, got \"lots\"".into()))
        );
        assert!(matches!(p.timeout(), Err(Usage::Bad(m)) if m.starts_with("--timeout")));
        assert!(
            matches!(p.u64_in("count", 11, 20), Err(Usage::Bad(m)) if m.starts_with("--count"))
        );
        assert_eq!(parse(&SPEC, &args("x --help")).unwrap_err(), Usage::Help);
    }

    #[test]
    fn values_may_look_like_options_and_dash_is_positional() {
        let p = parse(&SPEC, &args("- /x --size --verify --count=-1")).unwrap();
        assert_eq!(p.pos, ["-", "/x"]);
        assert_eq!(p.text("size"), Some("--verify"));
        assert!(!p.flag("verify"));
        assert_eq!(p.text("count"), Some("-1"));
        assert_eq!(err("h:1 /x --size 1 --nope=3"), "unknown option --nope");
        assert_eq!(err("h:1 /x --size 1 -h2"), "unknown option -h2");
        assert_eq!(err("h:1 /x --size 1 -qx"), "unknown option -qx");
        assert_eq!(parse(&SPEC, &args("-h")).unwrap_err(), Usage::Help);
    }

    #[test]
    fn numbers() {
        assert_eq!(number("32M"), Some(32 << 20));
        assert_eq!(number("1g"), Some(1 << 30));
        assert_eq!(number("0xff"), Some(255));
        assert_eq!(number("12"), Some(12));
        assert_eq!(number(""), None);
        assert_eq!(number("M"), None);
        assert_eq!(number("-1"), None);
        assert_eq!(number("99999999999999999999"), None);
        assert_eq!(number("17179869184G"), None);
    }

    #[test]
    fn help_lists_every_option() {
        let h = SPEC.help();
        assert!(h.starts_with(
            "usage: xenbox-peer demo HOST:PORT PATH [--count N] --size B [--verify] [--timeout SECS]\n"
        ));
        assert!(h.contains("--count N"));
        assert!(h.contains("(default 10)"));
        assert!(h.contains("(required)"));
        assert!(h.contains("-h, --help"));
    }
}
