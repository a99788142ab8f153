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

/// Starts each target again (a no-op for a node that is running).
pub async fn restart(ctx: &Ctx, targets: &[String]) -> anyhow::Result<()> {
    let mut rt = ctx.runtime.lock().await;
    for t in targets {
        rt.start(t).await?;
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
