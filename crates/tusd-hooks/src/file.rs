//! File hooks (tusd's `--hooks-dir`): for each event the executable named
//! as the event (`pre-create`, `post-finish`, ...) in the directory is run
//! with the [`HookRequest`] JSON on stdin, the directory as its working
//! directory, tusd's `TUS_ID`, `TUS_SIZE` and `TUS_OFFSET` in its
//! environment (added to the server's), and its stderr passed through. A
//! missing file means the event is not hooked. Exit code 0 and stdout
//! either empty (no changes) or a [`HookResponse`] JSON; anything else is
//! the hook's failure. Not retried, as in tusd.

use std::path::PathBuf;
use std::process::Stdio;

use async_trait::async_trait;
use tokio::io::AsyncWriteExt;

use crate::wire::{HookRequest, HookResponse};
use crate::{HookError, HookHandler};

pub struct FileHook {
    directory: PathBuf,
}

impl FileHook {
    /// Hooks in `directory` (made absolute, as tusd does).
    pub fn new(directory: impl Into<PathBuf>) -> FileHook {
        let directory = directory.into();
        let directory = std::path::absolute(&directory).unwrap_or(directory);
        FileHook { directory }
    }
}

#[async_trait]
impl HookHandler for FileHook {
    fn kind(&self) -> &'static str {
        "file"
    }

    async fn invoke(&self, request: &HookRequest) -> Result<HookResponse, HookError> {
        let path = self.directory.join(request.kind.name());
        let upload = &request.event.upload;
        let input = serde_json::to_vec(request)
            .map_err(|e| HookError(format!("encoding the hook request: {e}")))?;
        let spawned = tokio::process::Command::new(&path)
            .current_dir(&self.directory)
            .env("TUS_ID", &upload.id)
            .env("TUS_SIZE", upload.size.to_string())
            .env("TUS_OFFSET", upload.offset.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn();
        let mut child = match spawned {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(HookResponse::default())
            }
            Err(e) => return Err(HookError(format!("running {}: {e}", path.display()))),
        };
        let mut stdin = child.stdin.take().expect("piped");
        let writing = async move {
            // A hook that does not read its stdin is no failure.
            let _ = stdin.write_all(&input).await;
        };
        let (_, output) = tokio::join!(writing, child.wait_with_output());
        let output = output.map_err(|e| HookError(format!("running {}: {e}", path.display())))?;
        if !output.status.success() {
            return Err(HookError(format!(
                "unexpected return code {} from hook endpoint: {}",
                output.status.code().unwrap_or(-1),
                String::from_utf8_lossy(&output.stdout)
            )));
        }
        if output.stdout.iter().all(u8::is_ascii_whitespace) {
            return Ok(HookResponse::default());
        }
        serde_json::from_slice(&output.stdout).map_err(|e| {
            HookError(format!(
                "failed to parse hook response: {e}, response was: {}",
                String::from_utf8_lossy(&output.stdout)
            ))
        })
    }
}
