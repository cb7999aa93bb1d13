-- The user's plan (seed 001 `SubscriptionTier`); every account starts on FREE.
ALTER TABLE users
    ADD COLUMN subscription_tier text NOT NULL DEFAULT 'FREE'
        CHECK (subscription_tier IN ('FREE', 'STARTER', 'PROFESSIONAL', 'ENTERPRISE'));
