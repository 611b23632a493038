// Built with @vue/cli-service 4 (webpack 4), like the other NethServer 8 module UIs.
// Node >= 17 needs NODE_OPTIONS=--openssl-legacy-provider for webpack 4's md4 hashes
// (set by the npm scripts in package.json).
const path = require("path");
const webpack = require("webpack");

// @carbon/icons-vue 10 takes Vue 3's render path when "vue" exports `h`, which Vue
// 2.7 does: give it a "vue" without `h` (src/shims/vue-for-carbon-icons.js).
const carbonIconsVue = new webpack.NormalModuleReplacementPlugin(/^vue$/, (resource) => {
  if (/[\\/]@carbon[\\/]icons-vue[\\/]/.test(resource.context || "")) {
    resource.request = path.resolve(__dirname, "src/shims/vue-for-carbon-icons.js");
  }
});

module.exports = {
  publicPath: "./",
  productionSourceMap: false,
  configureWebpack: {
    plugins: [carbonIconsVue],
    performance: { hints: false },
    optimization: {
      splitChunks: {
        minSize: 10000,
        maxSize: 250000,
      },
    },
  },
  chainWebpack: (config) => {
    // Always emit the module logo as a file: cluster-admin shows it from its URL.
    config.module
      .rule("images")
      .use("url-loader")
      .loader("url-loader")
      .tap((options) => Object.assign(options, { limit: -1 }));
  },
};
