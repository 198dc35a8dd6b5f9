//! What ingest and the output workers share: the configuration, the metrics and the
//! (reloadable) templates.

use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};

use crate::config::Config;
use crate::metrics::Metrics;
use crate::render::{TemplateLoadError, Templates};

/// What workers share with ingest: configuration, metrics and the (reloadable) templates.
pub struct Core {
    pub config: Arc<Config>,
    pub metrics: Metrics,
    pub templates: RwLock<Arc<Templates>>,
}

impl Core {
    pub fn templates(&self) -> Arc<Templates> {
        match self.templates.read() {
            Ok(t) => t.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Reload templates (SIGHUP). On error the old templates stay in use.
    pub fn reload_templates(&self) -> Result<(), TemplateLoadError> {
        match Templates::load(&self.config) {
            Ok(t) => {
                match self.templates.write() {
                    Ok(mut g) => *g = Arc::new(t),
                    Err(p) => *p.into_inner() = Arc::new(t),
                }
                self.metrics
                    .template_reloads
                    .fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => {
                self.metrics
                    .template_reload_errors
                    .fetch_add(1, Ordering::Relaxed);
                Err(e)
            }
        }
    }
}
