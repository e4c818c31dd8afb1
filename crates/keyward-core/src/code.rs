//! THE table of error and decision codes: one row per code, with its HTTP status and title.

/// Every code keyward answers with, in management errors and verification decisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Code {
    Valid,
    ValidationFailed,
    Unauthenticated,
    InvalidCredentials,
    Forbidden,
    CsrfFailed,
    NotFound,
    Conflict,
    ApiKeyInactive,
    PayloadTooLarge,
    /// The request target is longer than the HTTP layer reads.
    UriTooLong,
    UnsupportedMediaType,
    TooManyAttempts,
    /// The request's headers are larger, or more, than the HTTP layer reads.
    HeadersTooLarge,
    ServiceUnavailable,
    Internal,
    InvalidApiKey,
    ApiKeyExpired,
    IpNotAllowed,
    SignatureRequired,
    InvalidSignature,
    SenderNotAllowed,
    ChannelScopeViolation,
    RateLimited,
    /// Gateway: the upstream refused the connection or failed mid-answer.
    UpstreamUnavailable,
    /// Gateway: the upstream did not connect or answer in time.
    UpstreamTimeout,
}

impl Code {
    /// Every code, for tables such as the metrics registry.
    pub const ALL: [Code; 26] = [
        Code::Valid,
        Code::ValidationFailed,
        Code::Unauthenticated,
        Code::InvalidCredentials,
        Code::Forbidden,
        Code::CsrfFailed,
        Code::NotFound,
        Code::Conflict,
        Code::ApiKeyInactive,
        Code::PayloadTooLarge,
        Code::UriTooLong,
        Code::UnsupportedMediaType,
        Code::TooManyAttempts,
        Code::HeadersTooLarge,
        Code::ServiceUnavailable,
        Code::Internal,
        Code::InvalidApiKey,
        Code::ApiKeyExpired,
        Code::IpNotAllowed,
        Code::SignatureRequired,
        Code::InvalidSignature,
        Code::SenderNotAllowed,
        Code::ChannelScopeViolation,
        Code::RateLimited,
        Code::UpstreamUnavailable,
        Code::UpstreamTimeout,
    ];

    /// (code string, HTTP status, title). `API_KEY_INACTIVE` is 409 when editing a revoked key
    /// and 401 as a verification decision: see [`Code::verify_status`].
    const fn row(self) -> (&'static str, u16, &'static str) {
        match self {
            Code::Valid => ("VALID", 200, "Valid"),
            Code::ValidationFailed => ("VALIDATION_FAILED", 400, "Validation failed"),
            Code::Unauthenticated => ("UNAUTHENTICATED", 401, "Authentication required"),
            Code::InvalidCredentials => ("INVALID_CREDENTIALS", 401, "Invalid credentials"),
            Code::Forbidden => ("FORBIDDEN", 403, "Forbidden"),
            Code::CsrfFailed => ("CSRF_FAILED", 403, "CSRF check failed"),
            Code::NotFound => ("NOT_FOUND", 404, "Not found"),
            Code::Conflict => ("CONFLICT", 409, "Conflict"),
            Code::ApiKeyInactive => ("API_KEY_INACTIVE", 409, "API key is inactive"),
            Code::PayloadTooLarge => ("PAYLOAD_TOO_LARGE", 413, "Payload too large"),
            Code::UriTooLong => ("URI_TOO_LONG", 414, "URI too long"),
            Code::UnsupportedMediaType => ("UNSUPPORTED_MEDIA_TYPE", 415, "Unsupported media type"),
            Code::HeadersTooLarge => ("HEADERS_TOO_LARGE", 431, "Request headers too large"),
            Code::TooManyAttempts => ("TOO_MANY_ATTEMPTS", 429, "Too many attempts"),
            Code::ServiceUnavailable => ("SERVICE_UNAVAILABLE", 503, "Service unavailable"),
            Code::Internal => ("INTERNAL", 500, "Internal server error"),
            Code::InvalidApiKey => ("INVALID_API_KEY", 401, "Invalid API key"),
            Code::ApiKeyExpired => ("API_KEY_EXPIRED", 401, "API key expired"),
            Code::IpNotAllowed => ("IP_NOT_ALLOWED", 403, "IP address not allowed"),
            Code::SignatureRequired => ("SIGNATURE_REQUIRED", 401, "Signature required"),
            Code::InvalidSignature => ("INVALID_SIGNATURE", 401, "Invalid signature"),
            Code::SenderNotAllowed => ("SENDER_NOT_ALLOWED", 403, "Sender not allowed"),
            Code::ChannelScopeViolation => ("CHANNEL_SCOPE_VIOLATION", 403, "Channel scope violation"),
            Code::RateLimited => ("RATE_LIMITED", 429, "Rate limited"),
            Code::UpstreamUnavailable => ("UPSTREAM_UNAVAILABLE", 502, "Upstream unavailable"),
            Code::UpstreamTimeout => ("UPSTREAM_TIMEOUT", 504, "Upstream timed out"),
        }
    }

    pub const fn as_str(self) -> &'static str {
        self.row().0
    }

    /// The HTTP status of a management error with this code.
    pub const fn http_status(self) -> u16 {
        self.row().1
    }

    /// The status the platform should answer its caller for this verification decision.
    pub const fn verify_status(self) -> u16 {
        match self {
            Code::ApiKeyInactive => 401,
            other => other.http_status(),
        }
    }

    pub const fn title(self) -> &'static str {
        self.row().2
    }

    /// The code whose string form is `text` (`"INVALID_API_KEY"`), for clients reading an answer.
    pub fn parse(text: &str) -> Option<Code> {
        Self::ALL.into_iter().find(|code| code.as_str() == text)
    }
}

#[cfg(test)]
mod tests {
    use super::Code;

    #[test]
    fn every_code_parses_back_from_its_string_and_nothing_else_does() {
        for code in Code::ALL {
            assert_eq!(Code::parse(code.as_str()), Some(code));
        }
        assert_eq!(Code::parse("invalid_api_key"), None, "codes are exact");
        assert_eq!(Code::parse(""), None);
    }
}
