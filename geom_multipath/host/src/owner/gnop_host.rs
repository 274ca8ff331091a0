//! The NOP class's view of the host ([`NopHost`]): over the owner's provider table while
//! a gnop verb runs ([`NopAdapter`], which records what the verb created, resized or
//! destroyed for the owner to apply afterwards), and read-only for the confxml
//! ([`NopView`]).

use super::*;

/// What the NOP class did to the set of providers during one call.
pub(super) enum NopChange {
    Created(ProviderInfo, Arc<NopDevice>),
    Resized(ProviderInfo),
    Destroyed(String),
}

/// The NOP class's view of the host: the provider table, the console, and a record of the
/// providers it creates and destroys (carried out by the owner after the call).
pub(super) struct NopAdapter<'a> {
    pub(super) providers: &'a mut ProviderTable,
    pub(super) console: &'a mut Console,
    pub(super) changes: Vec<NopChange>,
}

impl NopHost for NopAdapter<'_> {
    fn provider(&self, name: &str) -> Option<ProviderInfo> {
        self.providers.info(name).cloned()
    }
    fn open(&mut self, name: &str) -> Result<Arc<dyn Device>, Errno> {
        self.providers.handle(name).ok_or(Errno::ENXIO)
    }
    fn nop_created(&mut self, info: ProviderInfo, device: Arc<NopDevice>) {
        self.changes.push(NopChange::Created(info, device));
    }
    fn nop_resized(&mut self, info: ProviderInfo) {
        self.changes.push(NopChange::Resized(info));
    }
    fn nop_destroyed(&mut self, name: &str) {
        self.changes.push(NopChange::Destroyed(name.to_string()));
    }
    fn access(&self, name: &str) -> (i32, i32, i32) {
        let c = self.providers.totals(name);
        (c.r, c.w, c.e)
    }
    fn log(&mut self, line: String) {
        self.console.print(Level::Info, line);
    }
}

/// A read-only NOP host for the XML dump.
pub(super) struct NopView<'a>(pub(super) &'a ProviderTable);

impl NopHost for NopView<'_> {
    fn provider(&self, name: &str) -> Option<ProviderInfo> {
        self.0.info(name).cloned()
    }
    fn open(&mut self, _: &str) -> Result<Arc<dyn Device>, Errno> {
        Err(Errno::EPERM)
    }
    fn nop_created(&mut self, _: ProviderInfo, _: Arc<NopDevice>) {}
    fn nop_resized(&mut self, _: ProviderInfo) {}
    fn nop_destroyed(&mut self, _: &str) {}
    fn access(&self, name: &str) -> (i32, i32, i32) {
        let c = self.0.totals(name);
        (c.r, c.w, c.e)
    }
    fn log(&mut self, _: String) {}
}
