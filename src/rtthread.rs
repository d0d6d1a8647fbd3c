//! A thread of its own running a single-threaded tokio runtime, for the parts of the agent (and
//! of its benchmarks) whose work should neither share the agent's worker threads nor be
//! mistaken for theirs: the prober, the fake runtime served from its own thread, a bench's
//! listeners. Tasks are spawned through [`RuntimeThread::handle`]; the thread's CPU time can be
//! read at any moment; dropping it stops the runtime, which drops every task on it, and joins
//! the thread.

use std::time::Duration;

/// A named thread driving a current-thread tokio runtime until dropped.
pub struct RuntimeThread {
    handle: tokio::runtime::Handle,
    cpu_clock: Option<libc::clockid_t>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RuntimeThread {
    /// Starts the thread `name` (also the name of the runtime's blocking threads).
    pub fn start(name: &str) -> std::io::Result<RuntimeThread> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .thread_name(name)
            .build()?;
        let handle = rt.handle().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                let _ = rt.block_on(stopped);
                // Dropping `rt` here, outside any runtime, drops the tasks still on it.
            })?;
        Ok(RuntimeThread {
            handle,
            cpu_clock: crate::cputime::thread_cpu_clock(&thread),
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Spawns on this thread's runtime (`handle().spawn`), or enters it (`handle().enter()`) to
    /// create sockets that register with its reactor.
    pub fn handle(&self) -> &tokio::runtime::Handle {
        &self.handle
    }

    /// CPU time the thread has used so far (None where the platform cannot tell).
    pub fn cpu_time(&self) -> Option<Duration> {
        self.cpu_clock.and_then(crate::cputime::clock_cpu_time)
    }
}

impl Drop for RuntimeThread {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tasks_run_on_the_named_thread_and_stop_with_it() {
        let t = RuntimeThread::start("rt-test").unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        t.handle().spawn(async move {
            let _ = tx.send(std::thread::current().name().map(str::to_string));
        });
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(5)).unwrap().as_deref(),
            Some("rt-test")
        );
        // A task still pending when the thread stops is dropped, not left running.
        struct Flag(std::sync::Arc<std::sync::atomic::AtomicBool>);
        impl Drop for Flag {
            fn drop(&mut self) {
                self.0.store(true, std::sync::atomic::Ordering::SeqCst);
            }
        }
        let dropped = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = Flag(dropped.clone());
        t.handle().spawn(async move {
            let _flag = flag;
            std::future::pending::<()>().await;
        });
        assert!(t.cpu_time().is_some());
        drop(t);
        assert!(dropped.load(std::sync::atomic::Ordering::SeqCst));
    }
}
