//! API errors and their wire shape: every failure is a `meta/v1 Status` with the HTTP code,
//! reason and message kube-apiserver would send (`NotFound`, `AlreadyExists`, `Conflict`,
//! `Invalid` with causes, `Gone`, `Forbidden`, `Unauthorized`, ...).

use serde_json::{json, Value};

/// One failed API request, ready to be written as a `Status`.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Option<Value>,
}

/// What an error refers to, for `details` and the messages: the group, the resource (plural,
/// as `qualifiedResource` prints it) and the kind.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    pub group: &'a str,
    pub resource: &'a str,
}

impl Target<'_> {
    /// `pods` or `certificatesigningrequests.certificates.k8s.io`.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.resource.to_string()
        } else {
            format!("{}.{}", self.resource, self.group)
        }
    }

    fn details(&self, name: &str) -> Value {
        let mut d = json!({"name": name, "kind": self.resource});
        if !self.group.is_empty() {
            d["group"] = json!(self.group);
        }
        d
    }
}

impl ApiError {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    pub fn with_details(mut self, d: Value) -> Self {
        self.details = Some(d);
        self
    }

    pub fn not_found(t: Target<'_>, name: &str) -> Self {
        ApiError::new(
            404,
            "NotFound",
            format!("{} \"{name}\" not found", t.qualified()),
        )
        .with_details(t.details(name))
    }

    pub fn already_exists(t: Target<'_>, name: &str) -> Self {
        ApiError::new(
            409,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", t.qualified()),
        )
        .with_details(t.details(name))
    }

    pub fn conflict(t: Target<'_>, name: &str, why: &str) -> Self {
        ApiError::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": {why}",
                t.qualified()
            ),
        )
        .with_details(t.details(name))
    }

    pub fn modified(t: Target<'_>, name: &str) -> Self {
        Self::conflict(
            t,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    /// 422 with one cause per invalid field, as `errors.NewInvalid`.
    pub fn invalid(kind: &str, group: &str, name: &str, causes: Vec<FieldError>) -> Self {
        let summary: Vec<String> = causes.iter().map(FieldError::to_string).collect();
        let message = if summary.len() == 1 {
            format!("{kind} \"{name}\" is invalid: {}", summary[0])
        } else {
            format!("{kind} \"{name}\" is invalid: [{}]", summary.join(", "))
        };
        let mut details = json!({
            "name": name,
            "kind": kind,
            "causes": causes.iter().map(|c| json!({
                "reason": c.kind.reason(),
                "message": c.message(),
                "field": c.field,
            })).collect::<Vec<_>>(),
        });
        if !group.is_empty() {
            details["group"] = json!(group);
        }
        ApiError::new(422, "Invalid", message).with_details(details)
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(400, "BadRequest", message)
    }

    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        ApiError::new(405, "MethodNotAllowed", message)
    }

    pub fn gone(message: impl Into<String>) -> Self {
        ApiError::new(410, "Expired", message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        ApiError::new(403, "Forbidden", message)
    }

    pub fn unauthorized() -> Self {
        ApiError::new(401, "Unauthorized", "Unauthorized")
    }

    pub fn internal(message: impl Into<String>) -> Self {
        ApiError::new(500, "InternalError", message)
    }

    pub fn unsupported_media_type(ct: &str) -> Self {
        ApiError::new(
            415,
            "UnsupportedMediaType",
            format!("the body of the request was in an unknown format - accepted media types include: application/json, application/yaml (got {ct:?})"),
        )
    }

    pub fn too_large() -> Self {
        ApiError::new(
            413,
            "RequestEntityTooLarge",
            "Request entity too large: limit is 3145728",
        )
    }

    pub fn service_unavailable(message: impl Into<String>) -> Self {
        ApiError::new(503, "ServiceUnavailable", message)
    }

    pub fn timeout(message: impl Into<String>) -> Self {
        ApiError::new(504, "Timeout", message)
    }

    /// The `Status` object sent on the wire.
    pub fn to_status(&self) -> Value {
        let mut s = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(d) = &self.details {
            s["details"] = d.clone();
        }
        s
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.code, self.reason, self.message)
    }
}

/// The kinds of `field.Error` this server produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldErrorKind {
    Required,
    Invalid,
    Forbidden,
    Duplicate,
    NotSupported,
    NotFound,
}

impl FieldErrorKind {
    fn reason(self) -> &'static str {
        match self {
            FieldErrorKind::Required => "FieldValueRequired",
            FieldErrorKind::Invalid => "FieldValueInvalid",
            FieldErrorKind::Forbidden => "FieldValueForbidden",
            FieldErrorKind::Duplicate => "FieldValueDuplicate",
            FieldErrorKind::NotSupported => "FieldValueNotSupported",
            FieldErrorKind::NotFound => "FieldValueNotFound",
        }
    }
}

/// One invalid field, printed as `field.Error` does (`spec.containers[0].image: Required value`).
#[derive(Debug, Clone)]
pub struct FieldError {
    pub kind: FieldErrorKind,
    pub field: String,
    pub value: Option<String>,
    pub detail: String,
}

impl FieldError {
    pub fn required(field: impl Into<String>, detail: impl Into<String>) -> Self {
        FieldError {
            kind: FieldErrorKind::Required,
            field: field.into(),
            value: None,
            detail: detail.into(),
        }
    }

    pub fn invalid(field: impl Into<String>, value: &str, detail: impl Into<String>) -> Self {
        FieldError {
            kind: FieldErrorKind::Invalid,
            field: field.into(),
            value: Some(value.to_string()),
            detail: detail.into(),
        }
    }

    pub fn forbidden(field: impl Into<String>, detail: impl Into<String>) -> Self {
        FieldError {
            kind: FieldErrorKind::Forbidden,
            field: field.into(),
            value: None,
            detail: detail.into(),
        }
    }

    pub fn duplicate(field: impl Into<String>, value: &str) -> Self {
        FieldError {
            kind: FieldErrorKind::Duplicate,
            field: field.into(),
            value: Some(value.to_string()),
            detail: String::new(),
        }
    }

    pub fn not_found(field: impl Into<String>, value: &str) -> Self {
        FieldError {
            kind: FieldErrorKind::NotFound,
            field: field.into(),
            value: Some(value.to_string()),
            detail: String::new(),
        }
    }

    pub fn not_supported(field: impl Into<String>, value: &str, supported: &[&str]) -> Self {
        let list: Vec<String> = supported.iter().map(|s| format!("\"{s}\"")).collect();
        FieldError {
            kind: FieldErrorKind::NotSupported,
            field: field.into(),
            value: Some(value.to_string()),
            detail: format!("supported values: {}", list.join(", ")),
        }
    }

    fn message(&self) -> String {
        let head = match self.kind {
            FieldErrorKind::Required => "Required value".to_string(),
            FieldErrorKind::Forbidden => "Forbidden".to_string(),
            FieldErrorKind::Invalid => {
                format!("Invalid value: \"{}\"", self.value.as_deref().unwrap_or(""))
            }
            FieldErrorKind::Duplicate => {
                format!(
                    "Duplicate value: \"{}\"",
                    self.value.as_deref().unwrap_or("")
                )
            }
            FieldErrorKind::NotSupported => format!(
                "Unsupported value: \"{}\"",
                self.value.as_deref().unwrap_or("")
            ),
            FieldErrorKind::NotFound => {
                format!("Not found: \"{}\"", self.value.as_deref().unwrap_or(""))
            }
        };
        if self.detail.is_empty() {
            head
        } else {
            format!("{head}: {}", self.detail)
        }
    }
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message())
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_found_status_has_the_apiserver_shape() {
        let e = ApiError::not_found(
            Target {
                group: "",
                resource: "pods",
            },
            "web",
        );
        let s = e.to_status();
        assert_eq!(s["kind"], "Status");
        assert_eq!(s["message"], "pods \"web\" not found");
        assert_eq!(s["reason"], "NotFound");
        assert_eq!(s["code"], 404);
        assert_eq!(s["details"]["kind"], "pods");
    }

    #[test]
    fn invalid_lists_its_causes() {
        let e = ApiError::invalid(
            "Pod",
            "",
            "p",
            vec![FieldError::required("spec.containers[0].image", "")],
        );
        assert_eq!(
            e.message,
            "Pod \"p\" is invalid: spec.containers[0].image: Required value"
        );
        assert_eq!(
            e.to_status()["details"]["causes"][0]["reason"],
            "FieldValueRequired"
        );
    }
}
