//! What the agent does after a renewal is written: run the configured command (no shell) and
//! signal the configured process, so a legacy service reloads its files.

use std::path::Path;
use std::time::Duration;

use super::config::{AfterRenewal, Signal};

/// Why an after-renewal action failed (logged and counted; the credential stays written).
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    #[error("command `{program}`: {reason}")]
    Command { program: String, reason: String },
    #[error("pid file {}: {reason}", path.display())]
    PidFile {
        path: std::path::PathBuf,
        reason: String,
    },
    #[error("signal to pid {pid}: {reason}")]
    Signal { pid: i32, reason: String },
}

/// How long a command may run before it is killed.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs `after`'s command, then sends its signal. Fails with the first action that failed.
pub async fn run(after: &AfterRenewal) -> Result<(), HookError> {
    if let Some(argv) = &after.command {
        command(argv).await?;
    }
    if let Some((signal, pid_file)) = &after.signal {
        send(*signal, pid_file)?;
    }
    Ok(())
}

async fn command(argv: &[String]) -> Result<(), HookError> {
    let Some((program, args)) = argv.split_first() else {
        return Ok(());
    };
    let fail = |reason: String| HookError::Command {
        program: program.clone(),
        reason,
    };
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| fail(e.to_string()))?;
    let status = tokio::time::timeout(COMMAND_TIMEOUT, child.wait())
        .await
        .map_err(|_| {
            fail(format!(
                "still running after {}s, killed",
                COMMAND_TIMEOUT.as_secs()
            ))
        })?
        .map_err(|e| fail(e.to_string()))?;
    if status.success() {
        Ok(())
    } else {
        Err(fail(format!("exited with {status}")))
    }
}

fn send(signal: Signal, pid_file: &Path) -> Result<(), HookError> {
    let text = std::fs::read_to_string(pid_file).map_err(|e| HookError::PidFile {
        path: pid_file.to_owned(),
        reason: e.to_string(),
    })?;
    let pid: i32 =
        text.trim()
            .parse()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| HookError::PidFile {
                path: pid_file.to_owned(),
                reason: format!("`{}` is not a process id", text.trim()),
            })?;
    let signal = match signal {
        Signal::Hup => nix::sys::signal::Signal::SIGHUP,
        Signal::Usr1 => nix::sys::signal::Signal::SIGUSR1,
        Signal::Usr2 => nix::sys::signal::Signal::SIGUSR2,
    };
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal).map_err(|e| HookError::Signal {
        pid,
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_failing_command_is_reported_with_its_exit_status() {
        let after = AfterRenewal {
            command: Some(vec!["false".into()]),
            signal: None,
        };
        let e = run(&after).await.unwrap_err();
        assert!(e.to_string().contains("exited with"), "{e}");
    }

    #[tokio::test]
    async fn a_command_runs_with_its_arguments_and_no_shell() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("ran; echo injected");
        let after = AfterRenewal {
            command: Some(vec!["touch".into(), marker.display().to_string()]),
            signal: None,
        };
        run(&after).await.unwrap();
        assert!(
            marker.exists(),
            "the argument is one file name, not shell text"
        );
    }

    #[tokio::test]
    async fn a_signal_reaches_the_process_named_by_the_pid_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid_file = dir.path().join("app.pid");
        std::fs::write(&pid_file, format!("{}\n", child.id())).unwrap();
        let after = AfterRenewal {
            command: None,
            signal: Some((Signal::Hup, pid_file)),
        };
        run(&after).await.unwrap();
        let status = child.wait().unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(1), "sleep died of SIGHUP");
    }

    #[tokio::test]
    async fn a_pid_file_without_a_pid_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("app.pid");
        std::fs::write(&pid_file, "not a pid").unwrap();
        let after = AfterRenewal {
            command: None,
            signal: Some((Signal::Usr1, pid_file)),
        };
        let e = run(&after).await.unwrap_err();
        assert!(e.to_string().contains("is not a process id"), "{e}");
    }
}
