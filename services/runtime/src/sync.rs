//! One policy for poisoned locks, everywhere: **recover and go on**. A lock is poisoned when a
//! thread panicked while holding it. Every lock of the project guards figures, maps and caches
//! whose critical sections leave them consistent at each step (an insert, a counter, a swap), so
//! the data a panicking holder left are still valid; panicking in turn would take down a service
//! (every request, every partition) for one failed task. `.locked()`, `.reading()` and
//! `.writing()` say so at each call site instead of a choice between `unwrap` and `into_inner`.

use std::sync::{Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// [`Mutex::lock`] that recovers a poisoned lock.
pub trait MutexExt<T: ?Sized> {
    fn locked(&self) -> MutexGuard<'_, T>;
}

impl<T: ?Sized> MutexExt<T> for Mutex<T> {
    fn locked(&self) -> MutexGuard<'_, T> {
        self.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// [`RwLock::read`] and [`RwLock::write`] that recover a poisoned lock.
pub trait RwLockExt<T: ?Sized> {
    fn reading(&self) -> RwLockReadGuard<'_, T>;
    fn writing(&self) -> RwLockWriteGuard<'_, T>;
}

impl<T: ?Sized> RwLockExt<T> for RwLock<T> {
    fn reading(&self) -> RwLockReadGuard<'_, T> {
        self.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn writing(&self) -> RwLockWriteGuard<'_, T> {
        self.write().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn a_lock_poisoned_by_a_panicking_holder_still_serves_its_data() {
        let counts = Arc::new(Mutex::new(vec![1]));
        let table = Arc::new(RwLock::new(7));
        let (c, t) = (counts.clone(), table.clone());
        let panicked = std::thread::spawn(move || {
            let _held = c.lock().unwrap();
            let _written = t.write().unwrap();
            panic!("a failed task");
        })
        .join();
        assert!(panicked.is_err());
        assert!(counts.is_poisoned() && table.is_poisoned());
        counts.locked().push(2);
        assert_eq!(*counts.locked(), vec![1, 2]);
        *table.writing() += 1;
        assert_eq!(*table.reading(), 8);
    }
}
