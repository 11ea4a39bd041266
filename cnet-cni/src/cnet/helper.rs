//! Helper threads for work an invocation overlaps with its critical path (a flush that waits
//! for the disk, reading the programmed policy state, writing its record). The machine may be
//! small and busy, so a helper is only started for work that takes long enough (≥ ~0.3 ms)
//! and is always joined while the node state lock is still held.

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
        Ok(h) => match tx.send(value) {
            Ok(()) => Ok(Helper(h)),
            Err(mpsc::SendError(v)) => {
                let _ = h.join();
                Err(v)
            }
        },
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
        .map(Helper)
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
