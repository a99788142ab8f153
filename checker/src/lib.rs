//! Faultline's checker: history formats, sequential models and a linearizability
//! checker. Pure: no I/O beyond reading history files, no async.

pub mod budget;
pub mod election_safety;
pub mod error;
pub mod format;
pub mod generate;
pub mod history;
pub mod linearizability;
pub mod lost_writes;
pub mod membership_agreement;
pub mod model;
pub mod record;
pub mod result;
pub mod txn;
pub mod validity;
pub mod value;
pub mod versions;

pub use error::ReadError;
pub use format::Format;
pub use history::History;
pub use linearizability::{check, CheckOptions, Engine, Linearizability};
pub use result::CheckerResult;
pub use validity::Validity;

use model::{AppendKv, FifoQueue, Model, ModelError, Mutex, Register};

/// Why a named check could not run.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// No model has that name.
    #[error(
        "unknown model `{0}` (known: register, cas-register, kv, append-kv, mutex, fifo-queue, list-append, rw-register)"
    )]
    UnknownModel(String),
    /// An op does not fit the model.
    #[error(transparent)]
    Model(#[from] ModelError),
}

fn run<M: Model + Sync>(
    model: M,
    history: &History,
    options: &CheckOptions,
) -> Result<Linearizability, ModelError> {
    if options.partition {
        check(&model, history, options)
    } else {
        if let Some(proved) = linearizability::composed(&model, history, options)? {
            return Ok(proved);
        }
        check(
            &linearizability::Whole::new(model, history.keys.len()),
            history,
            options,
        )
    }
}

/// Checks `history` against the model called `name` (see [`model::MODELS`]).
pub fn check_named(
    name: &str,
    history: &History,
    options: &CheckOptions,
) -> Result<Linearizability, CheckError> {
    Ok(match name {
        "register" => run(Register::plain(), history, options)?,
        "cas-register" => run(Register::cas(), history, options)?,
        "kv" => run(Register::kv(), history, options)?,
        "append-kv" => match versions::refute_append_kv(history) {
            Some(refuted) => linearizability::refuted(AppendKv.name(), history, options, refuted),
            None => run(AppendKv, history, options)?,
        },
        "mutex" => run(Mutex, history, options)?,
        "fifo-queue" => run(FifoQueue, history, options)?,
        other => return Err(CheckError::UnknownModel(other.to_string())),
    })
}
