//! Starting the child: fork/exec in its own process group, with a clean
//! signal state, the right stdio and, if asked, another user.
//!
//! Owns: everything that happens between fork and exec. The child gets:
//! - its own process group (pgid = its pid), so that a group signal or the
//!   final SIGKILL reaches its workers and never us;
//! - an empty signal mask and default dispositions for every signal: exec
//!   resets caught signals but keeps ignored ones and the mask, and most
//!   servers never reset them (a child that inherits an ignored SIGTERM
//!   cannot be stopped gracefully);
//! - our stdout, and our stdout again as its stderr unless `keep_stderr`
//!   (rule R4). These are inherited descriptors, not pipes: nothing is
//!   copied, nothing is lost when the child writes a lot and exits, and no
//!   escaped grandchild can hold a pipe open;
//! - the terminal's foreground group when stdin is a terminal (as tini
//!   does), so `docker run -it` delivers Ctrl-C and keyboard input to it.
//!
//! Must not: wait for the child. `std::process::Child::wait` would race the
//! reaper's `waitpid(-1)`; only `reaper` collects exit statuses.

use std::ffi::OsString;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use nix::unistd::{Gid, Group, Pid, Uid, User};

use crate::error::Error;

/// The user and groups the child runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups; the primary group alone for numeric users.
    pub groups: Vec<u32>,
}

impl Credentials {
    /// Resolves `USER[:GROUP]`, each by name or number. A named user brings
    /// its primary group and supplementary groups from the system databases
    /// (as `su` does); a number that is not in /etc/passwd gets group 0
    /// unless one is given (as `docker run --user` does).
    pub fn resolve(spec: &str) -> Result<Credentials, Error> {
        let bad = |what: String| Error::Config(format!("--user {spec:?}: {what}"));
        let (user, group) = match spec.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (spec, None),
        };
        if user.is_empty() || group == Some("") {
            return Err(bad("expected USER or USER:GROUP".into()));
        }
        // A number is a uid whether or not /etc/passwd knows it; a name
        // must be there.
        let numeric = user.parse::<u32>().ok();
        let entry = match numeric {
            Some(uid) => User::from_uid(Uid::from_raw(uid)).ok().flatten(),
            None => Some(
                User::from_name(user)
                    .map_err(|e| bad(format!("cannot look up user: {e}")))?
                    .ok_or_else(|| bad(format!("no user named {user:?} in /etc/passwd")))?,
            ),
        };
        let uid = entry
            .as_ref()
            .map(|u| u.uid.as_raw())
            .or(numeric)
            .ok_or_else(|| bad("no such user".into()))?;
        let gid = match group {
            Some(g) => match g.parse::<u32>() {
                Ok(gid) => gid,
                Err(_) => Group::from_name(g)
                    .map_err(|e| bad(format!("cannot look up group: {e}")))?
                    .ok_or_else(|| bad(format!("no group named {g:?} in /etc/group")))?
                    .gid
                    .as_raw(),
            },
            None => entry.as_ref().map_or(0, |u| u.gid.as_raw()),
        };
        // Supplementary groups only come with a user known by name and no
        // explicit group; otherwise the child gets exactly the gid asked for.
        let groups = match (&entry, group, numeric) {
            (Some(u), None, None) => {
                let name = std::ffi::CString::new(u.name.as_str())
                    .map_err(|_| bad("user name contains NUL".into()))?;
                nix::unistd::getgrouplist(&name, Gid::from_raw(gid))
                    .map_err(|e| bad(format!("cannot list the user's groups: {e}")))?
                    .into_iter()
                    .map(Gid::as_raw)
                    .collect()
            }
            _ => vec![gid],
        };
        Ok(Credentials { uid, gid, groups })
    }
}

/// What to start.
#[derive(Debug, Clone)]
pub struct ChildSpec {
    /// Program and arguments; the program is looked up in PATH.
    pub command: Vec<OsString>,
    /// Keep the child's stderr apart instead of merging it into stdout.
    pub keep_stderr: bool,
    /// Run as another user.
    pub user: Option<Credentials>,
    /// Extra environment variables.
    pub env: Vec<(OsString, OsString)>,
}

/// Starts the child and returns its pid once `exec` has succeeded (std
/// reports exec failures back through a close-on-exec pipe, so a missing or
/// non-executable command is an error here, not a mysterious exit status).
pub fn spawn(spec: &ChildSpec) -> Result<Pid, Error> {
    let (program, args) = spec
        .command
        .split_first()
        .ok_or_else(|| Error::Config("no command given; put it after `--`".into()))?;
    let name = program.to_string_lossy().into_owned();
    let mut cmd = Command::new(program);
    cmd.args(args).envs(spec.env.iter().map(|(k, v)| (k, v)));
    cmd.process_group(0);
    if !spec.keep_stderr {
        let stdout = io::stdout()
            .as_fd()
            .try_clone_to_owned()
            .map_err(|source| Error::Spawn {
                command: name.clone(),
                source,
            })?;
        cmd.stderr(Stdio::from(stdout));
    }
    let take_terminal = nix::unistd::isatty(io::stdin().as_fd()).unwrap_or(false);
    let user = spec.user.clone();
    // SAFETY: the closure runs in the forked child before exec and calls
    // only async-signal-safe functions; it allocates nothing (the groups
    // vector was built before the fork).
    unsafe {
        cmd.pre_exec(move || in_child_before_exec(take_terminal, user.as_ref()));
    }
    let child = cmd
        .spawn()
        .map_err(|source| classify_exec_error(&name, source))?;
    Ok(Pid::from_raw(child.id() as i32))
}

/// Runs in the child between fork and exec.
fn in_child_before_exec(take_terminal: bool, user: Option<&Credentials>) -> io::Result<()> {
    // SAFETY: plain syscalls on our own process; see `spawn`.
    unsafe {
        if take_terminal {
            // We are now a background group; tcsetpgrp from a background
            // group raises SIGTTOU unless it is ignored, so ignore it for
            // the call (it is reset to the default below). Failure is not
            // fatal: the child still runs, without the terminal.
            libc::signal(libc::SIGTTOU, libc::SIG_IGN);
            libc::tcsetpgrp(libc::STDIN_FILENO, libc::getpid());
        }
        // Every signal to its default action, through the raw system call:
        // glibc's wrappers refuse its two internal real-time signals (32
        // and 33), and glibc's posix_spawn leaves those *ignored* in the
        // processes it starts, so an ignore could otherwise leak through us.
        // An all-zero kernel sigaction is SIG_DFL with no flags and an empty
        // mask on every architecture's layout.
        let default_action = [0u64; 4];
        for sig in 1..=libc::SIGRTMAX() {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                libc::syscall(
                    libc::SYS_rt_sigaction,
                    sig,
                    default_action.as_ptr(),
                    std::ptr::null_mut::<u64>(),
                    8usize,
                );
            }
        }
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        if libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut()) != 0 {
            return Err(io::Error::last_os_error());
        }
        if let Some(c) = user {
            // Groups first, then gid, then uid: after setuid we no longer
            // have the right to change groups.
            if libc::setgroups(c.groups.len(), c.groups.as_ptr()) != 0
                || libc::setgid(c.gid) != 0
                || libc::setuid(c.uid) != 0
            {
                return Err(io::Error::last_os_error());
            }
        }
    }
    Ok(())
}

/// Maps an exec failure to the shell's conventions: 127 for a command that
/// does not exist, 126 for one that cannot be executed. (A failed setuid in
/// `in_child_before_exec` reports EPERM, which exec itself does not, so it
/// stays a plain spawn error.)
fn classify_exec_error(command: &str, source: io::Error) -> Error {
    let command = command.to_owned();
    match source.raw_os_error() {
        Some(libc::ENOENT) | Some(libc::ENOTDIR) => Error::CommandNotFound { command, source },
        Some(libc::EACCES) | Some(libc::ENOEXEC) | Some(libc::EISDIR) => {
            Error::CommandNotExecutable { command, source }
        }
        _ => Error::Spawn { command, source },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_user_and_group() {
        let c = Credentials::resolve("12345:678").unwrap();
        assert_eq!(
            c,
            Credentials {
                uid: 12345,
                gid: 678,
                groups: vec![678]
            }
        );
    }

    #[test]
    fn unknown_names_are_config_errors() {
        let e = Credentials::resolve("no-such-user-here").unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(Credentials::resolve("0:no-such-group-here").is_err());
        assert!(Credentials::resolve(":").is_err());
    }

    #[test]
    fn root_by_name() {
        let c = Credentials::resolve("root").unwrap();
        assert_eq!((c.uid, c.gid), (0, 0));
        assert!(c.groups.contains(&0));
    }
}
