//! The one error enum of the API, mapped to Kinto's JSON error body in exactly one place.
