//! Envoy as a child that never outlives `layover`. Without this, SIGTERM to `layover envoy
//! --run` (what `kill`, systemd and a Kubernetes pod shutdown send) ended layover and left Envoy
//! running as an orphan. Now SIGTERM, SIGINT and SIGHUP are passed on to Envoy, which drains
//! and exits on each (Envoy's `SIGTERM`/`SIGINT` handling), and layover exits only after Envoy.

use std::process::{Command, ExitStatus};
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::process::{kill_process, Pid, Signal};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// Work that runs beside Envoy until told to stop (the `--watch` loop).
pub type Beside<'a> = &'a (dyn Fn(&AtomicBool) -> Result<(), String> + Sync);

/// The signals passed on to Envoy.
const FORWARDED: [i32; 3] = [SIGTERM, SIGINT, SIGHUP];

fn as_signal(raw: i32) -> Signal {
    match raw {
        SIGINT => Signal::INT,
        SIGHUP => Signal::HUP,
        _ => Signal::TERM,
    }
}

/// Starts `cmd` (Envoy) and waits for it, passing SIGTERM / SIGINT / SIGHUP on to it. `beside`
/// runs on another thread while Envoy runs (the `--watch` loop); it must return once `stop` is
/// set, which happens when Envoy has exited. An error from `beside` stops Envoy (SIGTERM) and
/// is returned after Envoy has exited.
pub fn run(cmd: &mut Command, beside: Option<Beside<'_>>) -> Result<ExitStatus, String> {
    let mut signals =
        Signals::new(FORWARDED).map_err(|e| format!("cannot install signal handlers: {e}"))?;
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {:?}: {e}", cmd.get_program()))?;
    let pid = Pid::from_child(&child);
    let handle = signals.handle();
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(move || {
            for raw in signals.forever() {
                // Envoy may have exited already: then there is nobody to tell.
                let _ = kill_process(pid, as_signal(raw));
            }
        });
        let beside_result = beside.map(|task| {
            let stop = &stop;
            s.spawn(move || {
                let r = task(stop);
                if r.is_err() {
                    let _ = kill_process(pid, Signal::TERM);
                }
                r
            })
        });
        let status = child
            .wait()
            .map_err(|e| format!("waiting for Envoy failed: {e}"));
        stop.store(true, Ordering::Relaxed);
        handle.close();
        if let Some(t) = beside_result {
            match t.join() {
                Ok(Err(e)) => return Err(e),
                Err(_) => return Err("the watch loop failed".to_string()),
                Ok(Ok(())) => {}
            }
        }
        status
    })
}
