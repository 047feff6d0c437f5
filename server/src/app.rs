//! Wiring (temporary stub while the stages land).

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::Config;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("not wired yet")]
    NotWired,
}

pub async fn run(
    _config: Config,
    _listener: TcpListener,
    _shutdown: CancellationToken,
) -> Result<(), AppError> {
    Err(AppError::NotWired)
}
