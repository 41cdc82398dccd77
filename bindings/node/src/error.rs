//! Errors thrown into JS, with Node's `code`.
//!
//! A failing `#[napi]` call returns a [`Failure`]. napi-derive throws it with
//! `JsError::from(failure).throw_into(env)`, and napi 3's `JsError<S>` creates the JS error with
//! `napi_create_error(env, code, message)`, `code` being `S::as_ref()`: Node then sets the
//! error's own `code` property (`'EADDRINUSE'`, `'ERR_CORRAL_WRONG_STATE'`...), and `message`
//! is the engine's message as it is. No text to parse on the JS side.
//!
//! The one part of Node's shape napi cannot attach here is `errno` (the conversion has no env
//! to add properties with): lib/errors.js `nativeError` adds it, by name, to errors whose code
//! is an errno name, as Node's system errors carry it. `syscall`, `address` and `port` are set
//! by the JS that knows them (lib/errors.js `systemError`), as in Node.

use std::borrow::Cow;

/// What a native call throws: Node's error `code` and the message.
#[derive(Debug)]
pub struct Failure {
    code: Cow<'static, str>,
    message: String,
    /// The option a bad value was given for, and why it was refused
    /// (`corral_core::Error::option`); see [`Failure::throw_naming_option`].
    option: Option<(String, String)>,
}

/// The result of a native call.
pub type Result<T> = std::result::Result<T, Failure>;

/// The error code, as napi's error "status" (what `napi_create_error` gets as `code`).
#[derive(Debug, Clone)]
pub struct Code(Cow<'static, str>);

impl AsRef<str> for Code {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Failure {
    /// An error with `code` (an errno name or an `ERR_CORRAL_*` code) and `message`.
    pub fn new(code: &'static str, message: impl Into<String>) -> Failure {
        Failure {
            code: Cow::Borrowed(code),
            message: message.into(),
            option: None,
        }
    }

    /// An `ERR_CORRAL_INVALID_OPTION` for option `name` (as JS spells it), refused because
    /// `why`; the message is `"<name>: <why>"`, as the engine's.
    pub fn invalid_option(name: &str, why: impl Into<String>) -> Failure {
        let why = why.into();
        Failure {
            code: Cow::Borrowed("ERR_CORRAL_INVALID_OPTION"),
            message: format!("{name}: {why}"),
            option: Some((name.to_string(), why)),
        }
    }

    /// The engine's refusal of an option value (`corral_core::Error::invalid_option`) as an
    /// `ERR_CORRAL_INVALID_OPTION`.
    pub fn from_option_error(e: corral_core::Error) -> Failure {
        Failure {
            code: Cow::Borrowed("ERR_CORRAL_INVALID_OPTION"),
            ..Failure::from(e)
        }
    }

    /// Throws this failure into JS now, as a napi error with `code` plus the properties
    /// `option` (the option's name) and `reason` (why its value was refused) when it names
    /// an option, so that JS can say which option without parsing the message. napi's own
    /// conversion (`From<Failure> for JsError`) has no env to add properties with, hence the
    /// throw here; the failure returned says the exception is pending, which napi-derive's
    /// wrapper leaves in place. A failure naming no option comes back as it is.
    pub fn throw_naming_option(self, env: &napi::Env) -> Failure {
        if self.option.is_none() {
            return self;
        }
        let thrown = self.to_js_error(env).and_then(|err| env.throw(err));
        match thrown {
            Ok(()) => Failure::new("PendingException", self.message),
            // The env could not build it: throw what napi can, without the properties.
            Err(_) => self,
        }
    }

    /// This failure as a JS error object: `message`, `code`, and `option` and `reason` when
    /// it names an option (as [`Failure::throw_naming_option`] throws it).
    pub fn to_js_error<'e>(
        &self,
        env: &'e napi::Env,
    ) -> napi::Result<napi::bindgen_prelude::Object<'e>> {
        use napi::bindgen_prelude::JsObjectValue;
        let mut err = env.create_error(napi::Error::new(
            napi::Status::GenericFailure,
            self.message.clone(),
        ))?;
        err.set_named_property("code", self.code.as_ref())?;
        if let Some((option, reason)) = &self.option {
            err.set_named_property("option", option.as_str())?;
            err.set_named_property("reason", reason.as_str())?;
        }
        Ok(err)
    }

    /// The code JS will see.
    pub fn code(&self) -> &str {
        &self.code
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} [{}]", self.message, self.code)
    }
}

/// The engine's errors: OS failures by their errno name (`EADDRINUSE`), the others by an
/// `ERR_CORRAL_*` code of their kind.
impl From<corral_core::Error> for Failure {
    fn from(e: corral_core::Error) -> Failure {
        use corral_core::ErrorKind as K;
        let code: Cow<'static, str> = match e.kind() {
            K::Os | K::Disconnected => match e.code() {
                Some(c) => Cow::Owned(c.to_string()),
                None => Cow::Borrowed("ERR_CORRAL_OS"),
            },
            // A refused option (corral_core::Error::invalid_option) is told apart by its code,
            // as supervise()'s are; `throw_naming_option` adds `option` and `reason`.
            K::InvalidArgument if e.option().is_some() => "ERR_CORRAL_INVALID_OPTION".into(),
            K::InvalidArgument => "ERR_CORRAL_INVALID_ARGUMENT".into(),
            K::Protocol => "ERR_CORRAL_PROTOCOL".into(),
            K::TooLarge => "ERR_CORRAL_MESSAGE_TOO_LARGE".into(),
            K::WrongState => "ERR_CORRAL_WRONG_STATE".into(),
            K::NotWorker => "ERR_CORRAL_NOT_A_WORKER".into(),
            K::NoSuchWorker => "ERR_CORRAL_NO_SUCH_WORKER".into(),
            // Not reached: the Node front's primary queues without a limit, as node:cluster does.
            K::WouldBlock => "ERR_CORRAL_WOULD_BLOCK".into(),
        };
        Failure {
            code,
            message: e.message().to_string(),
            option: e.option().map(|o| (o.to_string(), e.reason().to_string())),
        }
    }
}

/// napi's own failures keep napi's status as their code (`'InvalidArg'`...). A pending JS
/// exception stays `'PendingException'`, which napi's throw leaves in place.
impl From<napi::Error> for Failure {
    fn from(e: napi::Error) -> Failure {
        Failure {
            code: Cow::Owned(e.status.as_ref().to_string()),
            message: e.reason,
            option: None,
        }
    }
}

/// What napi-derive's generated wrapper throws (see the module docs).
impl From<Failure> for napi::JsError<Code> {
    fn from(f: Failure) -> Self {
        napi::Error::new(Code(f.code), f.message).into()
    }
}

/// `corral_core::Error` into a [`Failure`], for `map_err`.
pub fn to_napi(e: corral_core::Error) -> Failure {
    e.into()
}
