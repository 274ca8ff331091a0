//! The one way an export takes and gives back access to a provider.
