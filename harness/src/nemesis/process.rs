//! Process faults: kill and restart, pause and resume, through the runtime.

use super::Ctx;

/// SIGKILL each target.
pub async fn kill(ctx: &Ctx, targets: &[String]) -> anyhow::Result<()> {
    let mut rt = ctx.runtime.lock().await;
    for t in targets {
        rt.kill(t).await?;
    }
    Ok(())
}

/// Starts each target again (a no-op for a node that is running). A node that
/// cannot start from its own data is a finding, not the end of the run: it is
/// recorded as `restart-failed` (the `recovery` checker reads it) and stays down.
pub async fn restart(ctx: &Ctx, targets: &[String]) -> anyhow::Result<()> {
    let mut rt = ctx.runtime.lock().await;
    for t in targets {
        if let Err(e) = rt.start(t).await {
            ctx.recorder.nemesis(
                "restart-failed",
                serde_json::json!({"node": t, "error": format!("{e:#}")}),
            );
        }
    }
    Ok(())
}

/// SIGSTOP each target.
pub async fn pause(ctx: &Ctx, targets: &[String]) -> anyhow::Result<()> {
    let mut rt = ctx.runtime.lock().await;
    for t in targets {
        rt.pause(t).await?;
    }
    Ok(())
}

/// SIGCONT each target.
pub async fn resume(ctx: &Ctx, targets: &[String]) -> anyhow::Result<()> {
    let mut rt = ctx.runtime.lock().await;
    for t in targets {
        rt.resume(t).await?;
    }
    Ok(())
}
