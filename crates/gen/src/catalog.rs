//! The event catalogue: Segment's semantic specs (E-commerce v2, Video, Mobile, B2B
//! SaaS) as static tables of event names and the properties each one carries.
//!
//! Property names follow the specs exactly, snake_case and camelCase as published, so
//! generated tables look like the ones real Segment sources produce.

/// How a property's value is made. Most kinds draw from the RNG; some read the session
/// (the product being looked at, the video playing) so a session's events agree.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Kind {
    Choice(&'static [&'static str]),
    Int(i64, i64),
    /// A price-like float with two decimals.
    Money(f64, f64),
    Float(f64, f64),
    /// `true` with this percentage.
    Bool(u8),
    /// The event's own time, ISO-8601.
    Now,
    /// A date some days after the event, ISO date only.
    DateAhead(i64),
    Currency,
    /// A prefix and a number of random hex digits.
    Hex(&'static str, u8),
    Uuid,
    SessionId,
    ProductId,
    Sku,
    ProductName,
    Category,
    Brand,
    Variant,
    Price,
    Quantity,
    ProductUrl,
    ImageUrl,
    /// An array of product objects (cart or order contents).
    Products,
    OrderId,
    CheckoutId,
    CartId,
    Query,
    /// An array of `{type, value}` objects.
    Filters,
    Sorts,
    Step,
    PageUrl,
    Email,
    FirstName,
    LastName,
    Username,
    AccountName,
    /// Video: the asset and pod of the playing content, and its length and position.
    AssetId,
    AssetIds,
    PodId,
    PodIds,
    VideoTitle,
    Program,
    Position,
    TotalLength,
    /// Mobile: the app's version and build, and an earlier one.
    AppVersion,
    AppBuild,
    PreviousVersion,
    PreviousBuild,
    /// A `{name, source, medium, content}` campaign object.
    Campaign,
    /// An array of short strings.
    Keywords,
    /// A nested object describing the content an ad plays in.
    AdContent,
}

/// The JSON type a kind produces when it does not drift.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Shape {
    Str,
    Int,
    Float,
    Bool,
    Array,
    Object,
}

impl Kind {
    pub(super) fn shape(self) -> Shape {
        match self {
            Kind::Int(..) | Kind::Quantity | Kind::Step | Kind::Position | Kind::TotalLength => {
                Shape::Int
            }
            Kind::Money(..) | Kind::Float(..) | Kind::Price => Shape::Float,
            Kind::Bool(_) => Shape::Bool,
            Kind::Products
            | Kind::Filters
            | Kind::Sorts
            | Kind::AssetIds
            | Kind::PodIds
            | Kind::Keywords => Shape::Array,
            Kind::Campaign | Kind::AdContent => Shape::Object,
            _ => Shape::Str,
        }
    }
}

/// One property of an event, present on the given percentage of calls.
#[derive(Debug, Clone, Copy)]
pub(super) struct Prop {
    pub(super) name: &'static str,
    pub(super) kind: Kind,
    pub(super) percent: u8,
}

const fn p(name: &'static str, kind: Kind) -> Prop {
    Prop {
        name,
        kind,
        percent: 100,
    }
}

const fn opt(name: &'static str, kind: Kind, percent: u8) -> Prop {
    Prop {
        name,
        kind,
        percent,
    }
}

/// Which kind of product a session is using; decides the events it can send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Theme {
    Ecommerce,
    Video,
    Saas,
    /// Mobile application lifecycle; mixed into every mobile session.
    Lifecycle,
}

#[derive(Debug)]
pub(super) struct EventSpec {
    pub(super) name: &'static str,
    pub(super) theme: Theme,
    /// Relative frequency within its theme.
    pub(super) weight: u32,
    /// Property groups, concatenated.
    pub(super) props: &'static [&'static [Prop]],
}

const fn e(
    name: &'static str,
    theme: Theme,
    weight: u32,
    props: &'static [&'static [Prop]],
) -> EventSpec {
    EventSpec {
        name,
        theme,
        weight,
        props,
    }
}

const CURRENCY: &[Prop] = &[p("currency", Kind::Currency)];
const NONE: &[Prop] = &[];

const PRODUCT: &[Prop] = &[
    p("product_id", Kind::ProductId),
    p("sku", Kind::Sku),
    p("category", Kind::Category),
    p("name", Kind::ProductName),
    opt("brand", Kind::Brand, 90),
    opt("variant", Kind::Variant, 70),
    p("price", Kind::Price),
    opt("quantity", Kind::Quantity, 80),
    opt(
        "coupon",
        Kind::Choice(&["SPRING10", "FREESHIP", "WELCOME15"]),
        10,
    ),
    opt("position", Kind::Int(1, 24), 60),
    p("url", Kind::ProductUrl),
    opt("image_url", Kind::ImageUrl, 85),
];

const LIST: &[Prop] = &[
    p(
        "list_id",
        Kind::Choice(&[
            "hot_deals_1",
            "new_arrivals",
            "best_sellers",
            "search_results",
        ]),
    ),
    p("category", Kind::Category),
    opt("products", Kind::Products, 90),
];

const LIST_FILTERED: &[Prop] = &[
    p(
        "list_id",
        Kind::Choice(&["todays_deals_may_11", "outdoor", "sale"]),
    ),
    p("category", Kind::Category),
    p("filters", Kind::Filters),
    p("sorts", Kind::Sorts),
    p("products", Kind::Products),
];

const PROMOTION: &[Prop] = &[
    p(
        "promotion_id",
        Kind::Choice(&[
            "promo_1",
            "promo_spring",
            "promo_clearance",
            "promo_app_only",
        ]),
    ),
    p(
        "creative",
        Kind::Choice(&[
            "top_banner_2",
            "sidebar_square",
            "hero_video",
            "popup_10pct",
        ]),
    ),
    p(
        "name",
        Kind::Choice(&[
            "75% store-wide shoe sale",
            "Free shipping weekend",
            "Spring refresh",
        ]),
    ),
    p(
        "position",
        Kind::Choice(&["home_banner_top", "home_banner_bottom", "checkout_upsell"]),
    ),
];

const CART: &[Prop] = &[p("cart_id", Kind::CartId), p("products", Kind::Products)];

const ORDER: &[Prop] = &[
    p("order_id", Kind::OrderId),
    opt("checkout_id", Kind::CheckoutId, 90),
    opt(
        "affiliation",
        Kind::Choice(&["Google Store", "Web Shop", "iOS App", "Android App"]),
        70,
    ),
    p("total", Kind::Money(12.0, 480.0)),
    p("subtotal", Kind::Money(10.0, 450.0)),
    p("revenue", Kind::Money(10.0, 420.0)),
    p("shipping", Kind::Money(0.0, 15.0)),
    p("tax", Kind::Money(0.5, 40.0)),
    opt("discount", Kind::Money(0.0, 25.0), 40),
    opt(
        "coupon",
        Kind::Choice(&["SPRING10", "FREESHIP", "WELCOME15"]),
        25,
    ),
    p("currency", Kind::Currency),
    p("products", Kind::Products),
];

const CHECKOUT_STEP: &[Prop] = &[
    p("checkout_id", Kind::CheckoutId),
    p("step", Kind::Step),
    opt(
        "shipping_method",
        Kind::Choice(&["Fedex", "UPS", "USPS Priority", "DHL Express"]),
        80,
    ),
    opt(
        "payment_method",
        Kind::Choice(&["Visa", "Mastercard", "PayPal", "Apple Pay", "Klarna"]),
        60,
    ),
];

const COUPON: &[Prop] = &[
    p("order_id", Kind::OrderId),
    p("cart_id", Kind::CartId),
    p(
        "coupon_id",
        Kind::Choice(&["may_deals_2016", "spring10", "freeship", "welcome15"]),
    ),
    opt(
        "coupon_name",
        Kind::Choice(&[
            "May Deals 2016",
            "Spring 10%",
            "Free shipping",
            "Welcome 15%",
        ]),
        80,
    ),
];

const WISHLIST: &[Prop] = &[
    p("wishlist_id", Kind::Hex("wl_", 10)),
    p(
        "wishlist_name",
        Kind::Choice(&["Loved Games", "Birthday", "Later", "Holiday gifts"]),
    ),
];

const SHARE: &[Prop] = &[
    p(
        "share_via",
        Kind::Choice(&["email", "sms", "whatsapp", "facebook", "copy_link"]),
    ),
    opt(
        "share_message",
        Kind::Choice(&["Hey, check out this item", "Thought of you!"]),
        60,
    ),
    opt("recipient", Kind::Email, 40),
];

const REVIEW: &[Prop] = &[
    p("product_id", Kind::ProductId),
    p("review_id", Kind::Hex("rev_", 8)),
    p(
        "review_body",
        Kind::Choice(&[
            "Average product",
            "Great value, fits as expected.",
            "Arrived late but works fine",
            "Would not buy again",
        ]),
    ),
    p("rating", Kind::Int(1, 5)),
];

const SEARCH: &[Prop] = &[p("query", Kind::Query)];

const VIDEO_PLAYBACK: &[Prop] = &[
    p("session_id", Kind::SessionId),
    opt("content_asset_id", Kind::AssetId, 80),
    opt("content_asset_ids", Kind::AssetIds, 30),
    opt("content_pod_id", Kind::PodId, 60),
    opt("content_pod_ids", Kind::PodIds, 20),
    opt("ad_asset_id", Kind::Hex("ad_", 6), 30),
    opt("ad_pod_id", Kind::Hex("adpod_", 4), 20),
    opt(
        "ad_type",
        Kind::Choice(&["pre-roll", "mid-roll", "post-roll"]),
        25,
    ),
    p("position", Kind::Position),
    p("total_length", Kind::TotalLength),
    p("bitrate", Kind::Int(300, 8000)),
    opt("framerate", Kind::Float(23.976, 60.0), 80),
    p(
        "video_player",
        Kind::Choice(&["youtube", "vimeo", "html5", "jwplayer", "brightcove"]),
    ),
    p("sound", Kind::Int(0, 100)),
    p("full_screen", Kind::Bool(30)),
    p("ad_enabled", Kind::Bool(60)),
    p(
        "quality",
        Kind::Choice(&["hd1080", "hd720", "medium", "small", "auto"]),
    ),
    opt("livestream", Kind::Bool(5), 70),
    opt(
        "method",
        Kind::Choice(&["autoplay", "click", "keyboard"]),
        40,
    ),
];

const VIDEO_CONTENT: &[Prop] = &[
    p("session_id", Kind::SessionId),
    p("asset_id", Kind::AssetId),
    p("pod_id", Kind::PodId),
    p("program", Kind::Program),
    p("title", Kind::VideoTitle),
    opt(
        "description",
        Kind::Choice(&[
            "A behind-the-scenes look at the new season",
            "Highlights from last night's game",
            "Episode recap and interviews",
        ]),
        70,
    ),
    opt("season", Kind::Choice(&["1", "2", "3", "4"]), 60),
    opt(
        "episode",
        Kind::Choice(&["1", "2", "3", "4", "5", "6", "7", "8"]),
        60,
    ),
    p(
        "genre",
        Kind::Choice(&["Drama", "Comedy", "Sports", "Documentary", "News", "Kids"]),
    ),
    opt(
        "channel",
        Kind::Choice(&["espn", "hbo", "pbs", "nbc", "in-house"]),
        80,
    ),
    opt(
        "publisher",
        Kind::Choice(&[
            "Turner Broadcasting Network",
            "Walt Disney",
            "Indie Films Ltd",
        ]),
        70,
    ),
    p("position", Kind::Position),
    p("total_length", Kind::TotalLength),
    opt("full_episode", Kind::Bool(70), 80),
    opt("keywords", Kind::Keywords, 50),
    opt("livestream", Kind::Bool(5), 70),
    opt("airdate", Kind::Now, 40),
    opt("bitrate", Kind::Int(300, 8000), 50),
    opt("framerate", Kind::Float(23.976, 60.0), 40),
];

const VIDEO_AD: &[Prop] = &[
    p("session_id", Kind::SessionId),
    p("asset_id", Kind::Hex("ad_", 6)),
    p("pod_id", Kind::Hex("adpod_", 4)),
    opt("pod_position", Kind::Int(1, 4), 80),
    p("type", Kind::Choice(&["pre-roll", "mid-roll", "post-roll"])),
    p(
        "title",
        Kind::Choice(&[
            "The New Sedan",
            "Summer Sale",
            "Try Premium",
            "Fresh Coffee",
        ]),
    ),
    opt(
        "publisher",
        Kind::Choice(&["Carter Auto", "Acme Ads", "Brew & Co"]),
        80,
    ),
    p("position", Kind::Int(0, 30)),
    p("total_length", Kind::Int(15, 30)),
    opt("load_type", Kind::Choice(&["linear", "dynamic"]), 60),
    opt("content", Kind::AdContent, 50),
    opt("quartile", Kind::Int(1, 4), 30),
];

const APP_VERSION: &[Prop] = &[p("version", Kind::AppVersion), p("build", Kind::AppBuild)];

const APP_OPENED: &[Prop] = &[
    p("from_background", Kind::Bool(60)),
    opt(
        "referring_application",
        Kind::Choice(&["GMail", "Safari", "Chrome", "Instagram", "Messages"]),
        20,
    ),
    opt("url", Kind::PageUrl, 15),
    p("version", Kind::AppVersion),
    p("build", Kind::AppBuild),
];

const APP_UPDATED: &[Prop] = &[
    p("previous_version", Kind::PreviousVersion),
    p("previous_build", Kind::PreviousBuild),
    p("version", Kind::AppVersion),
    p("build", Kind::AppBuild),
];

const PUSH: &[Prop] = &[
    p("campaign", Kind::Campaign),
    opt(
        "action",
        Kind::Choice(&["Accept", "Dismiss", "View Offer", "Reply"]),
        50,
    ),
];

const DEEP_LINK: &[Prop] = &[
    p("url", Kind::PageUrl),
    p(
        "provider",
        Kind::Choice(&[
            "Branch Metrics",
            "AppsFlyer",
            "Adjust",
            "Firebase Dynamic Links",
        ]),
    ),
    opt(
        "referring_application",
        Kind::Choice(&["Safari", "Chrome", "Instagram", "Messages"]),
        50,
    ),
];

const INSTALL_ATTRIBUTED: &[Prop] = &[
    p(
        "provider",
        Kind::Choice(&["Tune/Kochava/Branch/AppsFlyer", "AppsFlyer", "Adjust"]),
    ),
    p("campaign", Kind::Campaign),
];

const CRASHED: &[Prop] = &[
    opt(
        "exception",
        Kind::Choice(&[
            "NSInvalidArgumentException",
            "NullPointerException",
            "OutOfMemoryError",
        ]),
        80,
    ),
    opt("fatal", Kind::Bool(70), 90),
    p("crash_id", Kind::Uuid),
];

const SIGNED_UP: &[Prop] = &[
    p(
        "type",
        Kind::Choice(&["organic", "invited", "google", "github"]),
    ),
    p("first_name", Kind::FirstName),
    p("last_name", Kind::LastName),
    p("email", Kind::Email),
    opt("phone", Kind::Hex("+1555", 7), 30),
    p("username", Kind::Username),
    opt(
        "title",
        Kind::Choice(&["Mr.", "Ms.", "Dr.", "Engineer", "Head of Growth"]),
        40,
    ),
];

const SIGNED_IN: &[Prop] = &[p("username", Kind::Username)];

const INVITE: &[Prop] = &[
    p("invitee_email", Kind::Email),
    opt("invitee_first_name", Kind::FirstName, 70),
    opt("invitee_last_name", Kind::LastName, 70),
    p(
        "invitee_role",
        Kind::Choice(&["Owner", "Admin", "Member", "Viewer"]),
    ),
];

const ACCOUNT: &[Prop] = &[
    p("account_name", Kind::AccountName),
    opt("account_id", Kind::Hex("acct_", 8), 80),
];

const ACCOUNT_USER: &[Prop] = &[
    p(
        "role",
        Kind::Choice(&["Owner", "Admin", "Member", "Viewer"]),
    ),
    p("account_name", Kind::AccountName),
];

const TRIAL: &[Prop] = &[
    p("trial_start_date", Kind::Now),
    p("trial_end_date", Kind::DateAhead(14)),
    p(
        "trial_plan_name",
        Kind::Choice(&["Business", "Team", "Enterprise"]),
    ),
];

/// Properties of events that appear later in a long run (see `Traffic::grow`).
pub(super) const LATE_EVENT_PROPS: &[Prop] = &[
    p(
        "source",
        Kind::Choice(&["web", "email", "in_app", "partner"]),
    ),
    opt("item_count", Kind::Int(1, 40), 70),
    opt("label", Kind::Choice(&["primary", "secondary", "beta"]), 50),
];

/// Names for events introduced during a long run; once exhausted they are numbered.
pub(super) const LATE_EVENT_NAMES: &[&str] = &[
    "Report Exported",
    "Dashboard Shared",
    "Filter Saved",
    "Onboarding Step Completed",
    "Referral Link Copied",
    "Live Chat Opened",
    "Gift Card Redeemed",
    "Store Locator Used",
    "Size Guide Viewed",
    "Subscription Paused",
    "Subscription Resumed",
    "Feedback Submitted",
];

/// Stems of property names introduced during a long run (`experiment_variant_17`).
pub(super) const LATE_PROPERTY_STEMS: &[&str] = &[
    "experiment_variant_",
    "feature_flag_",
    "ab_bucket_",
    "promo_slot_",
    "rec_model_v",
    "layout_test_",
];

use Theme::{Ecommerce, Lifecycle, Saas, Video};

pub(super) static EVENTS: &[EventSpec] = &[
    // E-commerce v2.
    e("Products Searched", Ecommerce, 60, &[SEARCH]),
    e("Product List Viewed", Ecommerce, 80, &[LIST]),
    e("Product List Filtered", Ecommerce, 25, &[LIST_FILTERED]),
    e("Promotion Viewed", Ecommerce, 30, &[PROMOTION]),
    e("Promotion Clicked", Ecommerce, 10, &[PROMOTION]),
    e("Product Clicked", Ecommerce, 70, &[PRODUCT]),
    e("Product Viewed", Ecommerce, 120, &[PRODUCT, CURRENCY]),
    e(
        "Product Added",
        Ecommerce,
        45,
        &[&[p("cart_id", Kind::CartId)], PRODUCT],
    ),
    e(
        "Product Removed",
        Ecommerce,
        12,
        &[&[p("cart_id", Kind::CartId)], PRODUCT],
    ),
    e("Cart Viewed", Ecommerce, 30, &[CART]),
    e("Checkout Started", Ecommerce, 20, &[ORDER]),
    e("Checkout Step Viewed", Ecommerce, 18, &[CHECKOUT_STEP]),
    e("Checkout Step Completed", Ecommerce, 16, &[CHECKOUT_STEP]),
    e(
        "Payment Info Entered",
        Ecommerce,
        14,
        &[CHECKOUT_STEP, &[p("order_id", Kind::OrderId)]],
    ),
    e("Order Completed", Ecommerce, 12, &[ORDER]),
    e("Order Updated", Ecommerce, 3, &[ORDER]),
    e("Order Refunded", Ecommerce, 2, &[ORDER]),
    e("Order Cancelled", Ecommerce, 2, &[ORDER]),
    e("Coupon Entered", Ecommerce, 5, &[COUPON]),
    e(
        "Coupon Applied",
        Ecommerce,
        4,
        &[COUPON, &[p("discount", Kind::Money(1.0, 30.0))]],
    ),
    e(
        "Coupon Denied",
        Ecommerce,
        2,
        &[
            COUPON,
            &[p(
                "reason",
                Kind::Choice(&["Coupon expired", "Minimum not met"]),
            )],
        ],
    ),
    e("Coupon Removed", Ecommerce, 1, &[COUPON]),
    e(
        "Product Added to Wishlist",
        Ecommerce,
        8,
        &[WISHLIST, PRODUCT],
    ),
    e(
        "Product Removed from Wishlist",
        Ecommerce,
        3,
        &[WISHLIST, PRODUCT],
    ),
    e(
        "Wishlist Product Added to Cart",
        Ecommerce,
        3,
        &[WISHLIST, &[p("cart_id", Kind::CartId)], PRODUCT],
    ),
    e("Product Shared", Ecommerce, 4, &[SHARE, PRODUCT]),
    e("Cart Shared", Ecommerce, 1, &[SHARE, CART]),
    e("Product Reviewed", Ecommerce, 3, &[REVIEW]),
    // Video.
    e("Video Playback Started", Video, 40, &[VIDEO_PLAYBACK]),
    e("Video Playback Paused", Video, 20, &[VIDEO_PLAYBACK]),
    e("Video Playback Interrupted", Video, 4, &[VIDEO_PLAYBACK]),
    e("Video Playback Buffer Started", Video, 8, &[VIDEO_PLAYBACK]),
    e(
        "Video Playback Buffer Completed",
        Video,
        8,
        &[VIDEO_PLAYBACK],
    ),
    e(
        "Video Playback Seek Started",
        Video,
        6,
        &[VIDEO_PLAYBACK, &[p("seek_position", Kind::Position)]],
    ),
    e("Video Playback Seek Completed", Video, 6, &[VIDEO_PLAYBACK]),
    e("Video Playback Resumed", Video, 15, &[VIDEO_PLAYBACK]),
    e("Video Playback Completed", Video, 10, &[VIDEO_PLAYBACK]),
    e("Video Playback Exited", Video, 8, &[VIDEO_PLAYBACK]),
    e("Video Content Started", Video, 35, &[VIDEO_CONTENT]),
    e("Video Content Playing", Video, 120, &[VIDEO_CONTENT]),
    e("Video Content Completed", Video, 20, &[VIDEO_CONTENT]),
    e("Video Ad Started", Video, 18, &[VIDEO_AD]),
    e("Video Ad Playing", Video, 30, &[VIDEO_AD]),
    e("Video Ad Completed", Video, 14, &[VIDEO_AD]),
    // Mobile lifecycle.
    e("Application Installed", Lifecycle, 6, &[APP_VERSION]),
    e("Application Opened", Lifecycle, 60, &[APP_OPENED]),
    e("Application Backgrounded", Lifecycle, 45, &[NONE]),
    e("Application Updated", Lifecycle, 5, &[APP_UPDATED]),
    e("Application Uninstalled", Lifecycle, 1, &[NONE]),
    e("Application Crashed", Lifecycle, 1, &[CRASHED]),
    e("Push Notification Received", Lifecycle, 15, &[PUSH]),
    e("Push Notification Tapped", Lifecycle, 6, &[PUSH]),
    e("Push Notification Bounced", Lifecycle, 1, &[PUSH]),
    e("Deep Link Clicked", Lifecycle, 3, &[DEEP_LINK]),
    e("Deep Link Opened", Lifecycle, 4, &[DEEP_LINK]),
    e("Install Attributed", Lifecycle, 3, &[INSTALL_ATTRIBUTED]),
    // B2B SaaS.
    e("Signed Up", Saas, 10, &[SIGNED_UP]),
    e("Signed In", Saas, 60, &[SIGNED_IN]),
    e("Signed Out", Saas, 20, &[SIGNED_IN]),
    e("Account Created", Saas, 5, &[ACCOUNT]),
    e("Account Deleted", Saas, 1, &[ACCOUNT]),
    e("Invite Sent", Saas, 12, &[INVITE]),
    e("Account Added User", Saas, 8, &[ACCOUNT_USER]),
    e("Account Removed User", Saas, 2, &[ACCOUNT_USER]),
    e("Trial Started", Saas, 5, &[TRIAL]),
    e("Trial Ended", Saas, 3, &[TRIAL]),
];

// Reference lists the value generators draw from.

pub(super) const CURRENCIES: &[&str] = &["USD", "USD", "USD", "EUR", "GBP", "CAD", "JPY", "BRL"];
pub(super) const QUERIES: &[&str] = &[
    "blue hotpants",
    "running shoes",
    "wireless earbuds",
    "gift for dad",
    "yoga mat",
    "rain jacket women",
    "usb-c cable",
    "café au lait mug",
    "standing desk",
    "kids backpack",
];
pub(super) const CATEGORIES: &[&str] = &[
    "Apparel",
    "Footwear",
    "Electronics",
    "Home & Kitchen",
    "Outdoors",
    "Toys",
    "Beauty",
    "Books",
];
pub(super) const BRANDS: &[&str] = &[
    "Acme",
    "Northwind",
    "Hanover",
    "Lumen",
    "Brightside",
    "Kōbe Works",
    "Fjällen",
];
pub(super) const ADJECTIVES: &[&str] = &[
    "Classic", "Ultra", "Eco", "Vintage", "Smart", "Compact", "Deluxe", "Lite", "Pro", "Everyday",
];
pub(super) const NOUNS: &[&str] = &[
    "Hoodie",
    "Sneaker",
    "Headphones",
    "Mug",
    "Backpack",
    "Lamp",
    "Jacket",
    "Blender",
    "Watch",
    "Notebook",
    "Tent",
    "Scarf",
];
pub(super) const VARIANTS: &[&str] = &[
    "red", "blue", "black", "white", "S", "M", "L", "XL", "200ml",
];
pub(super) const FIRST_NAMES: &[&str] = &[
    "Ana", "Ben", "Chloé", "David", "Emma", "Farid", "Grace", "Hiro", "Ines", "José", "Kai",
    "Lena", "Mia", "Noah", "Olga", "Priya", "Quinn", "Raj", "Sofia", "Tomás", "Uma", "Wei",
];
pub(super) const LAST_NAMES: &[&str] = &[
    "Smith",
    "García",
    "Müller",
    "Nguyen",
    "Okafor",
    "Rossi",
    "Tanaka",
    "Kowalski",
    "O'Brien",
    "Silva",
    "Johansson",
    "Patel",
    "Cohen",
    "Dubois",
];
pub(super) const EMAIL_DOMAINS: &[&str] = &[
    "gmail.com",
    "yahoo.com",
    "outlook.com",
    "icloud.com",
    "example.com",
    "proton.me",
];
pub(super) const COMPANIES: &[(&str, &str)] = &[
    ("Initech", "Software"),
    ("Globex", "Manufacturing"),
    ("Umbrella Health", "Healthcare"),
    ("Stark Logistics", "Transportation"),
    ("Wayne Retail", "Retail"),
    ("Hooli", "Technology"),
    ("Pied Piper", "Technology"),
    ("Soylent Foods", "Food & Beverage"),
    ("Vandelay Industries", "Import/Export"),
    ("Massive Dynamic", "Research"),
];
pub(super) const PLANS: &[&str] = &["free", "starter", "pro", "business", "enterprise"];
pub(super) const PROGRAMS: &[&str] = &[
    "Planet Earth",
    "Game of Thrones",
    "The Daily Show",
    "Monday Night Football",
    "Cooking with Kai",
];
pub(super) const PAGES: &[(&str, &str, &str)] = &[
    // (path, title, category)
    ("/", "Home", "Home"),
    ("/products", "All products", "Catalog"),
    ("/products/shoes", "Shoes", "Catalog"),
    ("/search", "Search", "Catalog"),
    ("/cart", "Your cart", "Checkout"),
    ("/checkout", "Checkout", "Checkout"),
    ("/pricing", "Pricing", "Marketing"),
    ("/blog/how-we-ship", "How we ship", "Blog"),
    ("/docs/getting-started", "Getting started", "Docs"),
    ("/account/settings", "Settings", "Account"),
    ("/watch", "Watch", "Video"),
];
pub(super) const SCREENS: &[(&str, &str)] = &[
    // (name, category)
    ("Home", "Main"),
    ("Product Detail", "Catalog"),
    ("Search Results", "Catalog"),
    ("Cart", "Checkout"),
    ("Checkout", "Checkout"),
    ("Player", "Video"),
    ("Settings", "Account"),
    ("Onboarding", "Account"),
];
pub(super) const REFERRERS: &[&str] = &[
    "",
    "",
    "https://www.google.com/",
    "https://www.bing.com/",
    "https://t.co/",
    "https://www.facebook.com/",
    "https://news.ycombinator.com/",
];
pub(super) const CAMPAIGN_SOURCES: &[(&str, &str)] = &[
    ("google", "cpc"),
    ("newsletter", "email"),
    ("facebook", "social"),
    ("partner_blog", "referral"),
];
pub(super) const CAMPAIGN_NAMES: &[&str] = &[
    "spring_sale",
    "black_friday",
    "retargeting_q2",
    "launch_week",
];

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn event_names_are_unique_and_weighted() {
        let names: HashSet<_> = EVENTS.iter().map(|e| e.name).collect();
        assert_eq!(names.len(), EVENTS.len());
        assert!(EVENTS.len() >= 60);
        assert!(EVENTS.iter().all(|e| e.weight > 0));
    }

    #[test]
    fn no_event_repeats_a_property() {
        for event in EVENTS {
            let mut seen = HashSet::new();
            for prop in event.props.iter().flat_map(|group| group.iter()) {
                assert!(
                    seen.insert(prop.name),
                    "{} repeats {}",
                    event.name,
                    prop.name
                );
            }
        }
    }
}
