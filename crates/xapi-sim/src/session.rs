//! Built-in `session.*` messages: login variants, logout, subject identifiers.

use std::thread;

use xapi_types::{Value, XapiError};

use crate::rpc::{Ctx, Registry};

pub(crate) fn register(reg: &mut Registry) {
    reg.register("session.login_with_password", login_with_password);
    reg.register(
        "session.slave_local_login_with_password",
        slave_local_login_with_password,
    );
    reg.register("session.logout", logout);
    reg.register("session.local_logout", logout);
    reg.register(
        "session.get_all_subject_identifiers",
        get_all_subject_identifiers,
    );
    reg.register(
        "session.logout_subject_identifier",
        logout_subject_identifier,
    );
}

fn str_param(params: &[Value], i: usize) -> &str {
    params.get(i).and_then(Value::as_str).unwrap_or_default()
}

fn check_credentials(ctx: &Ctx, params: &[Value]) -> Result<String, XapiError> {
    let (user, pwd) = (str_param(params, 0), str_param(params, 1));
    let cfg = &ctx.pool.config;
    if user == cfg.user && pwd == cfg.password {
        Ok(user.to_owned())
    } else {
        if !cfg.auth_failure_delay.is_zero() {
            thread::sleep(cfg.auth_failure_delay);
        }
        Err(XapiError::new(
            "SESSION_AUTHENTICATION_FAILED",
            [user, "Authentication failure"],
        ))
    }
}

/// `session.login_with_password(uname, pwd, [version], [originator])` (the master check is done by the dispatcher).
fn login_with_password(ctx: &Ctx, params: Vec<Value>) -> Result<Value, XapiError> {
    let user = check_credentials(ctx, &params)?;
    let originator = str_param(&params, 3);
    Ok(Value::String(
        ctx.pool
            .create_session(&user, &ctx.host, originator, false)
            .0,
    ))
}

/// `session.slave_local_login_with_password(uname, pwd)`: works on any host; the session is valid on it only.
fn slave_local_login_with_password(ctx: &Ctx, params: Vec<Value>) -> Result<Value, XapiError> {
    let user = check_credentials(ctx, &params)?;
    Ok(Value::String(
        ctx.pool.create_session(&user, &ctx.host, "", true).0,
    ))
}

fn logout(ctx: &Ctx, _: Vec<Value>) -> Result<Value, XapiError> {
    if let Some(s) = &ctx.session {
        ctx.pool.destroy_session(s);
    }
    Ok(Value::from(""))
}

fn get_all_subject_identifiers(_: &Ctx, _: Vec<Value>) -> Result<Value, XapiError> {
    Ok(Value::Array(Vec::new()))
}

fn logout_subject_identifier(_: &Ctx, _: Vec<Value>) -> Result<Value, XapiError> {
    Ok(Value::from(""))
}
