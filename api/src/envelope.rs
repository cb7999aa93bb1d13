//! The success envelope: `{ "success": true, "data": ..., "meta"?: { "pagination": ... } }`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::error::ApiError;

#[derive(Debug, Serialize, ToSchema)]
pub struct Envelope<T> {
    /// Always true.
    pub success: bool,
    pub data: T,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub meta: Option<Meta>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Meta {
    pub pagination: Pagination,
}

#[derive(Debug, Serialize, ToSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Pagination {
    pub page: u32,
    pub page_size: u32,
    pub total: i64,
    pub has_more: bool,
}

pub fn ok<T: Serialize>(data: T) -> Response {
    with_status(StatusCode::OK, data)
}

pub fn created<T: Serialize>(data: T) -> Response {
    with_status(StatusCode::CREATED, data)
}

pub fn with_status<T: Serialize>(status: StatusCode, data: T) -> Response {
    (
        status,
        axum::Json(Envelope {
            success: true,
            data,
            meta: None,
        }),
    )
        .into_response()
}

pub fn page<T: Serialize>(data: T, pagination: Pagination) -> Response {
    axum::Json(Envelope {
        success: true,
        data,
        meta: Some(Meta { pagination }),
    })
    .into_response()
}

pub const MAX_PAGE_SIZE: u32 = 100;
pub const DEFAULT_PAGE_SIZE: u32 = 20;

/// `page` (from 1) and `pageSize` (1..=100, default 20). Out of range is an error, not a clamp.
#[derive(Debug, Clone, Copy, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// Page number, from 1 (default 1).
    pub page: Option<u32>,
    /// Items per page, 1..=100 (default 20).
    pub page_size: Option<u32>,
}

impl PageParams {
    /// (page, pageSize, the rows to read)
    pub fn resolve(self) -> Result<(u32, u32, projections::Page), ApiError> {
        let page = self.page.unwrap_or(1);
        let size = self.page_size.unwrap_or(DEFAULT_PAGE_SIZE);
        if page < 1 {
            return Err(ApiError::validation("page", "page starts at 1"));
        }
        if !(1..=MAX_PAGE_SIZE).contains(&size) {
            return Err(ApiError::validation(
                "pageSize",
                format!("pageSize must be between 1 and {MAX_PAGE_SIZE}"),
            ));
        }
        let window = projections::Page {
            limit: i64::from(size),
            offset: (i64::from(page) - 1) * i64::from(size),
        };
        Ok((page, size, window))
    }
}

pub fn pagination(page: u32, page_size: u32, total: i64) -> Pagination {
    Pagination {
        page,
        page_size,
        total,
        has_more: (page as i64) * (page_size as i64) < total,
    }
}

/// Money on the wire: USD as a JSON number, rounded half-even to cents (the ledger keeps 6
/// fractional digits).
pub fn money(amount: rust_decimal::Decimal) -> f64 {
    rust_decimal::prelude::ToPrimitive::to_f64(&domain::job::estimate::cents(amount)).unwrap_or(0.0)
}
