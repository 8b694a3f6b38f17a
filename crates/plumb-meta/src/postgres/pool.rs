//! The blocking `postgres` client runs a Tokio runtime of its own and panics when called from
//! inside another one, which is where the web handlers call metadata from. So the connections
//! live on threads of their own: each of a few OS threads owns one connection and takes jobs from
//! one queue, and a caller waits for its job's answer as it would wait for the disk.

use super::server::Server;
use crate::{MetaError, Result};
use postgres::Client;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// A job gets its thread's connection, or why there is none.
type Job = Box<dyn FnOnce(Result<&mut Client>) + Send>;

/// A connection idle this long is checked (one round trip) before it is used: the server may
/// have restarted or closed it meanwhile, and a job should not be the one to find out. A connection
/// that breaks while in use fails its job (which may have run: it is not tried again) and is
/// replaced on the next.
const IDLE_CHECK: Duration = Duration::from_secs(1);
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

pub struct Pool {
    jobs: Sender<Job>,
}

impl Pool {
    /// Starts `size` threads; each connects on its first job, and again on the job after its
    /// connection broke. The threads end when the pool is dropped.
    pub fn start(server: Arc<Server>, size: usize) -> Result<Pool> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for i in 0..size {
            let (server, queue) = (server.clone(), queue.clone());
            std::thread::Builder::new()
                .name(format!("plumb-meta-pg-{i}"))
                .spawn(move || work(&server, &queue))
                .map_err(|e| MetaError::Storage(format!("cannot start a PostgreSQL connection thread: {e}")))?;
        }
        Ok(Pool { jobs })
    }

    /// Runs `f` on one of the pool's connections and waits for its answer.
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce(&mut Client) -> Result<T> + Send + 'static) -> Result<T> {
        let (reply, answer) = mpsc::sync_channel(1);
        let job: Job = Box::new(move |client| {
            let _ = reply.send(client.and_then(f));
        });
        let lost = || MetaError::Storage("the PostgreSQL call did not finish: it panicked (see the log)".into());
        self.jobs.send(job).map_err(|_| lost())?;
        answer.recv().map_err(|_| lost())?
    }
}

fn work(server: &Server, queue: &Mutex<Receiver<Job>>) {
    let mut kept: Option<(Client, Instant)> = None;
    loop {
        // The queue is locked only while this thread waits for the next job.
        let next = queue.lock().unwrap_or_else(PoisonError::into_inner).recv();
        let Ok(job) = next else { return };
        let client = kept.take().and_then(|(mut c, last)| usable(&mut c, last).then_some(c));
        let client = client.map_or_else(|| server.connect(), Ok);
        match client {
            Ok(mut c) => {
                // A panicking job (a bug) drops its reply, so its caller gets an error; the
                // connection may be mid-transaction then, so it is not kept.
                let done = catch_unwind(AssertUnwindSafe(|| job(Ok(&mut c))));
                if done.is_ok() && !c.is_closed() {
                    kept = Some((c, Instant::now()));
                }
            }
            Err(e) => {
                let _ = catch_unwind(AssertUnwindSafe(|| job(Err(e))));
            }
        }
    }
}

fn usable(client: &mut Client, last_used: Instant) -> bool {
    !client.is_closed() && (last_used.elapsed() < IDLE_CHECK || client.is_valid(CHECK_TIMEOUT).is_ok())
}
