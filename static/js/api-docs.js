// Renders /openapi.json with the vendored Swagger UI (no CDN).
(function () {
  const script = document.currentScript;
  window.ui = SwaggerUIBundle({
    url: script.dataset.specUrl,
    dom_id: "#swagger-ui",
    deepLinking: true,
    // "Try it out" runs with the login session, so changes must carry the CSRF token (API keys need none).
    requestInterceptor: (request) => {
      request.headers["X-CSRFToken"] = script.dataset.csrfToken;
      return request;
    },
  });
})();
