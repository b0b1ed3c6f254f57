//! A typed map in which stages hand results to later stages.

use std::any::{Any, TypeId};
use std::collections::HashMap;

/// Results of earlier stages, one value per type.
#[derive(Debug, Default)]
pub struct StageData {
    values: HashMap<TypeId, Box<dyn Any + Send + Sync>>,
}

impl StageData {
    /// Stores `value`, replacing one of the same type.
    pub fn insert<T: Any + Send + Sync>(&mut self, value: T) {
        self.values.insert(TypeId::of::<T>(), Box::new(value));
    }

    /// The value of type `T`, if a stage left one.
    pub fn get<T: Any + Send + Sync>(&self) -> Option<&T> {
        self.values.get(&TypeId::of::<T>())?.downcast_ref()
    }

    /// Removes and returns the value of type `T`.
    pub fn take<T: Any + Send + Sync>(&mut self) -> Option<T> {
        let boxed = self.values.remove(&TypeId::of::<T>())?;
        boxed.downcast().ok().map(|b| *b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_kept_by_type() {
        let mut data = StageData::default();
        data.insert(7u32);
        data.insert(String::from("x"));
        assert_eq!(data.get::<u32>(), Some(&7));
        assert_eq!(data.take::<String>().as_deref(), Some("x"));
        assert_eq!(data.get::<String>(), None);
    }
}
