//! `register`, `create-token`, `unregister`.

use serde_json::json;
use xo_lib::{codes, Credentials, Options, TokenOptions, Xo};

use crate::cli::RegisterArgs;
use crate::config::ConfigFile;
use crate::failure::Failure;

fn hostname() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

/// Signs in as `args` says; returns the connection and the user's e-mail.
async fn sign_in(args: &RegisterArgs, allow_unauthorized: bool) -> Result<(Xo, String), Failure> {
    if let Some(e) = &args.expires_in {
        if crate::duration::parse_ms(e).is_none() {
            return Err(Failure::Usage(format!(
                "invalid --expiresIn {e:?}: use a duration like 30d, 12h or 90m"
            )));
        }
    }
    let credentials = match (&args.token, &args.username) {
        (Some(_), Some(_)) => {
            return Err(Failure::Usage(
                "give either --token or a user name, not both".into(),
            ))
        }
        (Some(t), None) => Credentials::token(t.clone()),
        (None, None) => {
            return Err(Failure::Usage(
                "missing <username> (or --token <token>)".into(),
            ))
        }
        (None, Some(user)) => {
            let password = match &args.password {
                Some(p) => p.clone(),
                None => rpassword::prompt_password("Password: ").map_err(|e| {
                    Failure::Usage(format!(
                        "no password given and none could be asked on a terminal ({e})"
                    ))
                })?,
            };
            Credentials::Password {
                email: user.clone(),
                password,
                otp: args.otp.clone(),
            }
        }
    };
    let xo = Xo::connect(Options::new(&args.url).allow_unauthorized(allow_unauthorized)).await?;
    let user = match xo.sign_in(credentials).await {
        Ok(u) => u,
        Err(e) if e.is_authentication() => return Err(Failure::Auth(e.to_string())),
        Err(e) => return Err(e.into()),
    };
    Ok((xo, user.email))
}

fn expires(args: &RegisterArgs) -> Option<serde_json::Value> {
    args.expires_in.as_ref().map(|e| json!(e))
}

/// `register`: signs in, creates a token for this client and stores it.
pub async fn register(args: RegisterArgs, global_allow: bool) -> Result<(), Failure> {
    let allow = args.allow_unauthorized || global_allow;
    let mut config = ConfigFile::load()?;
    let (xo, email) = sign_in(&args, allow).await?;
    crate::output::print(&format!("Successfully logged with {email}\n"));
    let options = TokenOptions {
        description: Some(format!(
            "xo-cli@{} - {} - {} {}",
            env!("CARGO_PKG_VERSION"),
            hostname(),
            std::env::consts::OS,
            std::env::consts::ARCH
        )),
        client_id: Some(config.client_id()),
        expires_in: expires(&args),
    };
    let token = match xo.create_token(&options).await {
        Err(e) if e.code() == Some(codes::INVALID_PARAMETERS) => {
            // older servers know neither `client` nor `description`
            xo.create_token(&TokenOptions {
                expires_in: expires(&args),
                ..Default::default()
            })
            .await?
        }
        other => other?,
    };
    config.register(&args.url, &token, allow);
    config.save()?;
    xo.close();
    Ok(())
}

/// `create-token`: prints a new token.
pub async fn create_token(args: RegisterArgs, global_allow: bool) -> Result<(), Failure> {
    if args.token.is_some() {
        return Err(Failure::Usage(
            "create-token does not accept --token".into(),
        ));
    }
    let (xo, _) = sign_in(&args, args.allow_unauthorized || global_allow).await?;
    let token = xo
        .create_token(&TokenOptions {
            description: Some("xo-cli create-token".into()),
            client_id: None,
            expires_in: expires(&args),
        })
        .await?;
    crate::output::print(&format!("{token}\n"));
    xo.close();
    Ok(())
}

/// `unregister`: forgets the server and token.
pub fn unregister() -> Result<(), Failure> {
    let mut config = ConfigFile::load()?;
    config.unregister();
    config.save()
}
