//! Helper threads for work an invocation overlaps with its critical path (a flush that waits
//! for the disk, reading the programmed policy state, writing its record). The machine may be
//! small and busy, so a helper is only started for work that takes long enough (≥ ~0.3 ms)
//! and is always joined, or has told its result, while the node state lock is still held (the
//! policy helper frees its engine after telling it has written its record; nobody waits for
//! that).
//!
//! A new thread is moved off the caller's CPU as soon as it exists ([`elsewhere`]): the
//! scheduler may queue it on the busy CPU that created it (packing threads onto few CPUs),
//! where it would only start once the caller blocks. On this project's 2-vCPU VM that left
//! the policy helper waiting 0.68 ms on average before its first instruction (bpftrace,
//! wakeup_new to switch-in), against 0.09 ms when it was placed on the other, idle CPU.

use std::sync::mpsc;
use std::thread::{Builder, JoinHandle};

/// A started helper; [`Helper::join`] waits for its result.
#[derive(Debug)]
pub struct Helper<R>(JoinHandle<Option<R>>);

impl<R> Helper<R> {
    /// Wait for the helper: `None` when it panicked.
    pub fn join(self) -> Option<R> {
        self.0.join().ok().flatten()
    }
}

/// Run `f(value)` on a new thread named `name`. When no thread can be started, `value` is
/// handed back (`Err`) so the caller can do the work itself.
pub fn spawn_with<T, R>(name: &str, value: T, f: fn(T) -> R) -> Result<Helper<R>, T>
where
    T: Send + 'static,
    R: Send + 'static,
{
    let (tx, rx) = mpsc::channel::<T>();
    match Builder::new()
        .name(name.into())
        .spawn(move || rx.recv().ok().map(f))
    {
        Ok(h) => {
            elsewhere(&h);
            match tx.send(value) {
                Ok(()) => Ok(Helper(h)),
                Err(mpsc::SendError(v)) => {
                    let _ = h.join();
                    Err(v)
                }
            }
        }
        Err(_) => Err(value),
    }
}

/// Run `f` on a new thread named `name` (`None`: no thread could be started).
pub fn spawn<R, F>(name: &str, f: F) -> Option<Helper<R>>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    Builder::new()
        .name(name.into())
        .spawn(move || Some(f()))
        .ok()
        .map(|h| {
            elsewhere(&h);
            Helper(h)
        })
}

/// Let a just-started thread run on any CPU the caller may use except the one the caller is
/// on, so it starts now rather than when the caller blocks. Nothing happens when the caller
/// may use a single CPU, or a call fails (the thread then starts where the scheduler put it).
fn elsewhere<T>(h: &JoinHandle<T>) {
    use std::os::unix::thread::JoinHandleExt;
    let size = std::mem::size_of::<libc::cpu_set_t>();
    // SAFETY: `sched_getcpu` takes no arguments; `set` is a plain bit set written only by
    // `sched_getaffinity` (given its size) and read by the CPU_* helpers; the pthread handle
    // belongs to a thread that is not joined or detached while `h` is borrowed.
    unsafe {
        let cpu = libc::sched_getcpu();
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if cpu < 0 || libc::sched_getaffinity(0, size, &mut set) != 0 {
            return;
        }
        let Ok(cpu) = usize::try_from(cpu) else {
            return;
        };
        if libc::CPU_COUNT(&set) < 2 || !libc::CPU_ISSET(cpu, &set) {
            return;
        }
        libc::CPU_CLR(cpu, &mut set);
        // std's handle is an integer; libc's pthread_t is one on glibc, a pointer on musl.
        #[cfg(target_env = "musl")]
        let thread = h.as_pthread_t() as usize as libc::pthread_t;
        #[cfg(not(target_env = "musl"))]
        let thread = h.as_pthread_t();
        libc::pthread_setaffinity_np(thread, size, &set);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_the_work_and_returns_its_result() {
        let h = spawn_with("t", 20_u64, |x| x + 1).map_err(drop);
        assert_eq!(h.ok().and_then(Helper::join), Some(21));
    }

    #[test]
    fn a_panic_is_none() {
        let h = spawn_with("t", 0_u8, |_| -> u8 { panic!("boom") }).map_err(drop);
        assert_eq!(h.ok().and_then(Helper::join), None);
    }
}
