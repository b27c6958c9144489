//! Audit columns shared by every table: a time-ordered UUIDv7 `id`, and `created_at` /
//! `updated_at` set on every save.

/// Implements `ActiveModelBehavior` for an entity whose model has `id: Uuid`,
/// `created_at: DateTimeUtc` and `updated_at: DateTimeUtc`.
///
/// `new()` gives a fresh UUIDv7, so ids sort by creation time; `before_save` fills `id` and
/// `created_at` on insert when they were left unset and sets `updated_at` on every save.
macro_rules! audited_behavior {
    () => {
        #[async_trait::async_trait]
        impl ActiveModelBehavior for ActiveModel {
            fn new() -> Self {
                Self {
                    id: sea_orm::ActiveValue::Set(uuid::Uuid::now_v7()),
                    ..<Self as sea_orm::ActiveModelTrait>::default()
                }
            }

            async fn before_save<C>(mut self, _db: &C, insert: bool) -> Result<Self, DbErr>
            where
                C: ConnectionTrait,
            {
                let now = $crate::models::now();
                if insert {
                    if self.id.is_not_set() {
                        self.id = sea_orm::ActiveValue::Set(uuid::Uuid::now_v7());
                    }
                    if self.created_at.is_not_set() {
                        self.created_at = sea_orm::ActiveValue::Set(now);
                    }
                }
                self.updated_at = sea_orm::ActiveValue::Set(now);
                Ok(self)
            }
        }
    };
}

pub(crate) use audited_behavior;
