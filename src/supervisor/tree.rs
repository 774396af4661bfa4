//! The process tree below us, read from /proc with sysinfo.
//!
//! Owns: finding every live descendant (for the final SIGKILL, which must
//! also reach processes that left the child's process group with `setsid`)
//! and measuring the tree (for the status page). Must not: signal or reap;
//! callers do that.

use std::collections::HashMap;

use nix::unistd::Pid;
use sysinfo::{ProcessRefreshKind, ProcessStatus, ProcessesToUpdate, System};

/// One snapshot of the processes below `root`.
pub struct Tree {
    system: System,
    members: Vec<sysinfo::Pid>,
}

impl Tree {
    /// Reads the process table, with memory and CPU figures when `usage`.
    /// Zombies and threads are left out.
    pub fn below(root: Pid, usage: bool) -> Tree {
        let mut system = System::new();
        let kind = if usage {
            ProcessRefreshKind::nothing().with_memory().with_cpu()
        } else {
            ProcessRefreshKind::nothing()
        };
        system.refresh_processes_specifics(ProcessesToUpdate::All, true, kind);
        let mut children: HashMap<sysinfo::Pid, Vec<sysinfo::Pid>> = HashMap::new();
        for (pid, process) in system.processes() {
            if process.thread_kind().is_some() || process.status() == ProcessStatus::Zombie {
                continue;
            }
            if let Some(parent) = process.parent() {
                children.entry(parent).or_default().push(*pid);
            }
        }
        let mut members = Vec::new();
        let mut queue = vec![sysinfo::Pid::from_u32(root.as_raw() as u32)];
        while let Some(pid) = queue.pop() {
            if let Some(kids) = children.get(&pid) {
                members.extend_from_slice(kids);
                queue.extend_from_slice(kids);
            }
        }
        Tree { system, members }
    }

    /// The live descendants' pids.
    pub fn pids(&self) -> impl Iterator<Item = Pid> + '_ {
        self.members
            .iter()
            .map(|p| Pid::from_raw(p.as_u32() as i32))
    }

    /// Resident memory of the descendants, in bytes.
    pub fn rss_bytes(&self) -> u64 {
        self.members
            .iter()
            .filter_map(|p| self.system.process(*p))
            .map(|p| p.memory())
            .sum()
    }

    /// CPU time the descendants have used so far, in milliseconds.
    pub fn cpu_time_ms(&self) -> u64 {
        self.members
            .iter()
            .filter_map(|p| self.system.process(*p))
            .map(|p| p.accumulated_cpu_time())
            .sum()
    }

    /// How many live descendants there are.
    pub fn len(&self) -> usize {
        self.members.len()
    }
}
