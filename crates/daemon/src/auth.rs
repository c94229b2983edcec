//! The bearer token: generated at first start into `<data-dir>/token`
//! (mode 0600, 256 random bits as hex), or given in the config.

use rand::RngCore;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Why the token could not be read or made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// Reading, creating or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The token file exists but holds no usable token.
    #[error("{path}: {reason}")]
    Bad {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// Shortest token accepted, characters.
pub const MIN_TOKEN_CHARS: usize = 16;

/// Checks a token given in a config.
pub fn check_token(token: &str) -> Result<(), String> {
    if token.len() < MIN_TOKEN_CHARS {
        return Err(format!(
            "a token needs at least {MIN_TOKEN_CHARS} characters"
        ));
    }
    if !token.chars().all(|c| c.is_ascii_graphic()) {
        return Err("a token must be printable ASCII without spaces".into());
    }
    Ok(())
}

/// The token in `<data_dir>/token`, made (with the directory, mode 0700)
/// if it does not exist. Returns the token and whether it was just made.
pub fn load_or_create_token(data_dir: &Path) -> Result<(String, bool), TokenError> {
    let path = data_dir.join("token");
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| TokenError::Io { path, source }
    };
    match fs::read_to_string(&path) {
        Ok(text) => {
            let token = text.trim().to_string();
            check_token(&token).map_err(|reason| TokenError::Bad {
                path: path.clone(),
                reason,
            })?;
            return Ok((token, false));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(&path)(e)),
    }
    create_private_dir(data_dir).map_err(io(data_dir))?;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&path).map_err(io(&path))?;
    file.write_all(format!("{token}\n").as_bytes())
        .map_err(io(&path))?;
    Ok((token, true))
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

/// Compares a presented token with the expected one in time independent
/// of where they differ.
pub fn token_matches(presented: &str, expected: &str) -> bool {
    let (a, b) = (presented.as_bytes(), expected.as_bytes());
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= (x ^ y) as usize;
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_made_once_private_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("keel");
        let (token, made) = load_or_create_token(&data).unwrap();
        assert!(made);
        assert_eq!(token.len(), 64);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(data.join("token"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert_eq!(load_or_create_token(&data).unwrap(), (token.clone(), false));
        assert!(token_matches(&token, &token));
        assert!(!token_matches(&token[1..], &token));
        assert!(!token_matches("", &token));
        fs::write(data.join("token"), "short\n").unwrap();
        assert!(matches!(
            load_or_create_token(&data),
            Err(TokenError::Bad { .. })
        ));
    }
}
