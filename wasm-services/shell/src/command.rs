//! Command lines: words separated by blanks; `echo` and `write` take the rest
//! of the line as it was typed.

use alloc::format;
use alloc::string::String;

/// A parsed command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command<'a> {
    /// A blank line.
    Nothing,
    Help,
    Ps,
    Stats,
    /// `top [ROUNDS]`: redraw every second, until a key (or ROUNDS times).
    Top(Option<&'a str>),
    /// `trace on` / `trace off`.
    Trace(bool),
    Echo(&'a str),
    Restart(&'a str),
    Stop(&'a str),
    Start(&'a str),
    Swap {
        name: &'a str,
        path: &'a str,
    },
    Ls(Option<&'a str>),
    Cat(&'a str),
    Write {
        path: &'a str,
        text: &'a str,
    },
    Lspci,
    Ifconfig,
    Netstat,
    /// `ping HOST [COUNT]`: the host as typed (a dotted IPv4 address).
    Ping {
        host: &'a str,
        count: Option<&'a str>,
    },
}

/// One line per command, for `help`.
pub const HELP: &str = "\
commands:
  help               this list
  ps                 services: state, memory, fuel, messages, restarts
  stats              system counters, time blocked per service, endpoint queues, the trace ring
  top [ROUNDS]       CPU share, messages/s and memory per service, every second until a key
  trace on|off       turn the kernel's trace ring on or off (image-builder trace fetches it)
  restart NAME       restart a service (through the supervisor)
  stop NAME          stop a service
  start NAME         start a stopped, exited or faulted service
  swap NAME PATH     replace a running service with the module in file PATH
  ls [PATH]          list a directory (default /)
  cat PATH           print a file
  write PATH TEXT... replace file PATH's contents with TEXT and a newline
  lspci              PCI devices found at boot
  ifconfig           the network interface: addresses, link, counters
  ping HOST [COUNT]  ICMP echo to an IPv4 address (default 4 times)
  netstat            every socket of the TCP/IP service, with its owner
  echo TEXT...       print TEXT
keys: Backspace erases, Ctrl-U clears the line, Ctrl-C abandons it, Up/Down recall earlier lines
";

/// The first word of `text` and the rest after the blanks that follow it.
fn split_word(text: &str) -> (&str, &str) {
    let text = text.trim_start();
    match text.find(char::is_whitespace) {
        Some(end) => {
            let (word, rest) = text.split_at(end);
            (word, rest.trim_start())
        }
        None => (text, ""),
    }
}

/// Parses a line; the error is a message for the user (without `error: `).
pub fn parse(line: &str) -> Result<Command<'_>, String> {
    let (name, rest) = split_word(line);
    let mut words = rest.split_whitespace();
    let mut arguments = [None; 3];
    for slot in &mut arguments {
        *slot = words.next();
    }
    let command = match (name, arguments) {
        ("", _) => Command::Nothing,
        ("help", [None, ..]) => Command::Help,
        ("ps", [None, ..]) => Command::Ps,
        ("stats", [None, ..]) => Command::Stats,
        ("top", [rounds, None, _]) => Command::Top(rounds),
        ("trace", [Some("on"), None, _]) => Command::Trace(true),
        ("trace", [Some("off"), None, _]) => Command::Trace(false),
        ("trace", _) => return Err(String::from("usage: trace on|off")),
        ("top", _) => return Err(String::from("usage: top [ROUNDS]")),
        ("lspci", [None, ..]) => Command::Lspci,
        ("ifconfig", [None, ..]) => Command::Ifconfig,
        ("netstat", [None, ..]) => Command::Netstat,
        ("ping", [Some(host), count, None]) => Command::Ping { host, count },
        ("echo", _) => Command::Echo(rest.trim_end()),
        ("restart", [Some(service), None, _]) => Command::Restart(service),
        ("stop", [Some(service), None, _]) => Command::Stop(service),
        ("start", [Some(service), None, _]) => Command::Start(service),
        ("swap", [Some(service), Some(path), None]) => Command::Swap {
            name: service,
            path,
        },
        ("ls", [path, None, _]) => Command::Ls(path),
        ("cat", [Some(path), None, _]) => Command::Cat(path),
        ("write", [Some(_), ..]) => {
            let (path, text) = split_word(rest);
            Command::Write {
                path,
                text: text.trim_end(),
            }
        }
        ("ping", _) => return Err(String::from("usage: ping HOST [COUNT]")),
        ("help" | "ps" | "stats" | "lspci" | "ifconfig" | "netstat", _) => {
            return Err(format!("usage: {name}"));
        }
        ("restart" | "stop" | "start", _) => return Err(format!("usage: {name} NAME")),
        ("swap", _) => return Err(String::from("usage: swap NAME PATH")),
        ("ls", _) => return Err(String::from("usage: ls [PATH]")),
        ("cat", _) => return Err(String::from("usage: cat PATH")),
        ("write", _) => return Err(String::from("usage: write PATH TEXT...")),
        _ => return Err(format!("unknown command `{name}` (try `help`)")),
    };
    Ok(command)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse() {
        assert_eq!(parse(""), Ok(Command::Nothing));
        assert_eq!(parse("   "), Ok(Command::Nothing));
        assert_eq!(parse(" ps "), Ok(Command::Ps));
        assert_eq!(parse("help"), Ok(Command::Help));
        assert_eq!(parse("stats"), Ok(Command::Stats));
        assert_eq!(parse("top"), Ok(Command::Top(None)));
        assert_eq!(parse("top 3"), Ok(Command::Top(Some("3"))));
        assert_eq!(parse("trace on"), Ok(Command::Trace(true)));
        assert_eq!(parse("trace  off"), Ok(Command::Trace(false)));
        assert_eq!(parse("trace"), Err(String::from("usage: trace on|off")));
        assert_eq!(
            parse("trace maybe"),
            Err(String::from("usage: trace on|off"))
        );
        assert_eq!(parse("lspci"), Ok(Command::Lspci));
        assert_eq!(parse("ifconfig"), Ok(Command::Ifconfig));
        assert_eq!(parse("netstat"), Ok(Command::Netstat));
        assert_eq!(
            parse("ping 10.0.2.2 3"),
            Ok(Command::Ping {
                host: "10.0.2.2",
                count: Some("3")
            })
        );
        assert!(parse("ping").is_err());
        assert!(parse("ifconfig eth0").is_err());
        assert_eq!(
            parse("restart kv-server"),
            Ok(Command::Restart("kv-server"))
        );
        assert_eq!(parse("stop  hello"), Ok(Command::Stop("hello")));
        assert_eq!(parse("start hello"), Ok(Command::Start("hello")));
        assert_eq!(
            parse("swap kv-server /kv2.wasm"),
            Ok(Command::Swap {
                name: "kv-server",
                path: "/kv2.wasm"
            })
        );
        assert_eq!(parse("ls"), Ok(Command::Ls(None)));
        assert_eq!(parse("ls /docs"), Ok(Command::Ls(Some("/docs"))));
        assert_eq!(parse("cat /a.txt"), Ok(Command::Cat("/a.txt")));
    }

    #[test]
    fn echo_and_write_keep_the_rest_of_the_line() {
        assert_eq!(
            parse("echo  hello,   world "),
            Ok(Command::Echo("hello,   world"))
        );
        assert_eq!(parse("echo"), Ok(Command::Echo("")));
        assert_eq!(
            parse("write /n.txt  two  words "),
            Ok(Command::Write {
                path: "/n.txt",
                text: "two  words"
            })
        );
        assert_eq!(
            parse("write /empty.txt"),
            Ok(Command::Write {
                path: "/empty.txt",
                text: ""
            })
        );
    }

    #[test]
    fn mistakes_are_explained() {
        assert_eq!(
            parse("bogus 1 2"),
            Err(String::from("unknown command `bogus` (try `help`)"))
        );
        assert_eq!(parse("restart"), Err(String::from("usage: restart NAME")));
        assert_eq!(parse("stop a b"), Err(String::from("usage: stop NAME")));
        assert_eq!(parse("swap a"), Err(String::from("usage: swap NAME PATH")));
        assert_eq!(parse("ps -a"), Err(String::from("usage: ps")));
        assert_eq!(parse("ls a b"), Err(String::from("usage: ls [PATH]")));
        assert_eq!(parse("cat"), Err(String::from("usage: cat PATH")));
        assert_eq!(
            parse("write"),
            Err(String::from("usage: write PATH TEXT..."))
        );
    }
}
